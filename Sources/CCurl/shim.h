// libcurl for the S3 backend. curl_easy_setopt and curl_easy_getinfo are variadic C functions, which Swift
// cannot call: one typed inline wrapper per argument kind.
#include <curl/curl.h>

static inline CURLcode assetfs_curl_set_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode assetfs_curl_set_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode assetfs_curl_set_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode assetfs_curl_set_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode assetfs_curl_set_headers(CURL *handle, struct curl_slist *headers) {
    return curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
}

typedef size_t (*assetfs_curl_data_callback)(char *buffer, size_t size, size_t count, void *context);

static inline CURLcode assetfs_curl_set_write(CURL *handle, assetfs_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(handle, CURLOPT_WRITEDATA, context);
}

static inline CURLcode assetfs_curl_set_read(CURL *handle, assetfs_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_READFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(handle, CURLOPT_READDATA, context);
}

static inline CURLcode assetfs_curl_set_header_callback(CURL *handle, assetfs_curl_data_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(handle, CURLOPT_HEADERDATA, context);
}

static inline long assetfs_curl_response_code(CURL *handle) {
    long code = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

typedef int (*assetfs_curl_seek_callback)(void *context, curl_off_t offset, int origin);

static inline CURLcode assetfs_curl_set_seek(CURL *handle, assetfs_curl_seek_callback callback, void *context) {
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, callback);
    return rc != CURLE_OK ? rc : curl_easy_setopt(handle, CURLOPT_SEEKDATA, context);
}
