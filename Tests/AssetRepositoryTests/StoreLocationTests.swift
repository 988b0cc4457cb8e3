import AssetTestSupport
import AssetRepository
import Testing

@Suite("Store locations")
struct StoreLocationTests {
    @Test("paths, file:// and s3:// URLs parse; other schemes and bad buckets are usage errors, never directories")
    func parsing() throws {
        #expect(try StoreLocation(parsing: "/srv/store") == .local(path: "/srv/store"))
        #expect(try StoreLocation(parsing: "relative/store") == .local(path: "relative/store"))
        #expect(try StoreLocation(parsing: "file:///srv/store") == .local(path: "/srv/store"))
        #expect(try StoreLocation(parsing: "s3://team-data/assets/prod/") == .s3(bucket: "team-data", prefix: "assets/prod"))
        #expect(try StoreLocation(parsing: "s3://team-data") == .s3(bucket: "team-data", prefix: ""))
        #expect(try StoreLocation(parsing: "s3://team-data/x").description == "s3://team-data/x")
        for bad in ["ftp://host/x", "S3://Bucket/x", "s3://ab/x", "s3://Team/x", "s3:///x", "file://relative"] {
            let error = #expect(throws: RepositoryError.self, "\(bad)") { _ = try StoreLocation(parsing: bad) }
            #expect(error?.kind == .usage, "\(bad)")
        }
    }
}
