import AssetObjectStore
import AssetStore
import AssetTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A running SeaweedFS and an S3PackStorage on it (prefix "team/store"), scratch in the test's directory.
private func withS3<T>(_ label: String, _ body: (S3Server, S3PackStorage, String) throws -> T) throws -> T {
    try withTemporaryDirectory(label) { dir in
        let server = try S3Server(directory: dir + "/s3")
        defer { server.stop() }
        try FileManager.default.createDirectory(atPath: dir + "/scratch", withIntermediateDirectories: true)
        let storage = S3PackStorage(settings: settings(server), bucket: server.bucket, prefix: "team/store",
                                    scratchDirectory: dir + "/scratch")
        return try body(server, storage, dir)
    }
}

private func settings(_ server: S3Server, secret: String? = nil) -> S3Settings {
    var s = S3Settings(endpoint: server.endpoint, accessKey: server.accessKey, secretKey: secret ?? server.secretKey)
    s.requestTimeout = 5
    s.connectTimeout = 2
    return s
}

private let samples: [[UInt8]] = [
    [7],
    randomBytes(70_000, seed: 1),
    textBytes(300_000, seed: 2),
    randomBytes(3 * ChunkRecord.blockSize + 5, seed: 3),
]

private func writePack(_ storage: PackStorage, _ payloads: [[UInt8]]) throws -> (pack: ContentHash, size: UInt64, chunks: [ChunkLocation]) {
    let writer = PackWriter(storage: storage)
    let compressor = ZstdCompressor()
    for p in payloads { try writer.append(p.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of(p), compressor: compressor) }) }
    return try writer.seal()
}

@Suite("S3PackStorage against SeaweedFS")
struct S3PackStorageTests {
    @Test("packs go up whole, read back chunk by chunk with ranged GETs, list with sizes and dates, and delete")
    func roundTrip() throws {
        try withS3("s3-roundtrip") { _, storage, dir in
            let sealed = try writePack(storage, samples)
            #expect(try storage.size(of: sealed.pack) == sealed.size)
            let listed = try storage.list()
            #expect(listed.map(\.id) == [sealed.pack] && listed.first?.size == sealed.size)
            let age = Date().timeIntervalSince1970 - Double(listed.first?.modifiedNs ?? 0) / 1e9
            #expect(age >= -5 && age < 120, "LastModified is \(age) s ago")
            #expect(storage.describe(sealed.pack).hasPrefix("s3://assets/team/store/packs/"))
            #expect((try? FileManager.default.contentsOfDirectory(atPath: dir + "/scratch"))?.isEmpty == true, "scratch left behind")

            let reader = ChunkReader(storage: storage)
            for (i, location) in sealed.chunks.enumerated().reversed() { #expect(try reader.read(location) == samples[i]) }
            // A partial read: the block table, then one block, each verified.
            let big = sealed.chunks[3]
            let table = try reader.blockTable(big)
            #expect(try reader.readBlock(table[2], of: big) == Array(samples[3][(2 * ChunkRecord.blockSize)..<(3 * ChunkRecord.blockSize)]))
            #expect(try PackIndexReader.read(sealed.pack, from: storage) == sealed.chunks)

            // Past the end: nothing; a missing pack: notFound, named.
            var buffer = [UInt8](repeating: 0, count: 10)
            #expect(try buffer.withUnsafeMutableBytes { try storage.read(sealed.pack, at: sealed.size + 5, into: $0) } == 0)
            let other = ContentHash.of([1, 2, 3])
            let missing = #expect(throws: StoreError.self) { _ = try buffer.withUnsafeMutableBytes { try storage.read(other, at: 0, into: $0) } }
            #expect(missing?.code == .notFound && missing?.message.contains("s3://assets/team/store/packs/") == true)
            #expect(try storage.size(of: other) == nil)

            // Storing the same pack again is not an error (create-if-absent answers 412).
            let again = try writePack(storage, samples)
            let count = try storage.list().count
            #expect(again.pack == sealed.pack && count == 1)

            try storage.delete(sealed.pack)
            #expect(try storage.list().isEmpty)
            #expect(try storage.size(of: sealed.pack) == nil)
        }
    }

    @Test("a pack above the multipart threshold goes up in parts, reads back exact, is stored once; a failed upload is aborted and leaves nothing")
    func multipart() throws {
        try withS3("s3-multipart") { _, storage, dir in
            storage.multipart.threshold = 6 << 20
            storage.multipart.partSize = 5 << 20
            storage.multipart.partsInFlight = 3
            let mib: UInt64 = 1 << 20
            let expectedParts: [Range<UInt64>] = [0..<5 * mib, 5 * mib..<10 * mib, 10 * mib..<15 * mib, 15 * mib..<17 * mib]
            #expect(storage.multipart.parts(of: 17 * mib) == expectedParts)
            let payloads = (0..<4).map { randomBytes(4_000_000 + $0, seed: UInt64(50 + $0)) } + [textBytes(900_000, seed: 60)]
            let sealed = try writePack(storage, payloads)
            #expect(sealed.size > 16_000_000)
            #expect(try storage.size(of: sealed.pack) == sealed.size)
            let reader = ChunkReader(storage: storage)
            for (i, location) in sealed.chunks.enumerated() { #expect(try reader.read(location) == payloads[i]) }
            #expect(try PackIndexReader.read(sealed.pack, from: storage) == sealed.chunks)
            let again = try writePack(storage, payloads)
            let stored = try storage.list().count
            #expect(again.pack == sealed.pack && stored == 1)
            #expect(try storage.unfinishedUploads().isEmpty)

            // A source that ends before its stated size: a part fails, the upload is aborted, nothing is visible.
            let short = try PackSource.scratch(in: dir + "/scratch", contents: randomBytes(7 << 20, seed: 70))
            defer { short.discard() }
            let lying = PackSource(path: short.path, descriptor: short.descriptor, size: 12 << 20)
            let id = ContentHash.of([9, 9, 9])
            let failure = #expect(throws: StoreError.self) { try storage.put(id, from: lying) }
            #expect(failure?.message.contains(short.path) == true, "\(String(describing: failure))")
            #expect(try storage.size(of: id) == nil)
            #expect(try storage.unfinishedUploads().isEmpty, "the failed upload's parts were left on the server")
        }
    }

    @Test("listing pages through more packs than one page holds")
    func listingPages() throws {
        try withS3("s3-pages") { _, storage, _ in
            var made = Set<ContentHash>()
            for i in 0..<1005 {
                // Tiny packs, uploaded directly: one record each.
                made.insert(try writePack(storage, [Array("pack \(i)".utf8)]).pack)
            }
            let listed = try storage.list()
            #expect(listed.count == 1005 && Set(listed.map(\.id)) == made)
        }
    }

    @Test("a request signed with the wrong secret is refused (403) with a message naming the endpoint and the fix")
    func wrongSignatureRefused() throws {
        try withS3("s3-signature") { server, storage, dir in
            let sealed = try writePack(storage, samples)
            let forged = S3PackStorage(settings: settings(server, secret: "not-the-secret"), bucket: server.bucket, prefix: "team/store",
                                       scratchDirectory: dir + "/scratch")
            let refused = #expect(throws: StoreError.self) { _ = try forged.list() }
            #expect(refused?.cause == .http(403) && refused?.code == .failure, "\(String(describing: refused))")
            #expect(refused?.message.contains(server.endpoint) == true && refused?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
            #expect(refused?.message.contains("SignatureDoesNotMatch") == true, "\(String(describing: refused))")
            #expect(throws: StoreError.self) { _ = try ChunkReader(storage: forged).read(sealed.chunks[1]) }
        }
    }

    @Test("bytes changed on the server are caught by the chunk hash, never served")
    func tamperedObjectIsCaught() throws {
        try withS3("s3-tamper") { server, storage, dir in
            let sealed = try writePack(storage, samples)
            // Overwrite the object, correctly signed, with one byte of the raw 70 KB chunk flipped.
            var bytes = [UInt8](repeating: 0, count: Int(sealed.size))
            _ = try bytes.withUnsafeMutableBytes { try storage.read(sealed.pack, at: 0, into: $0) }
            let victim = sealed.chunks[1]
            bytes[Int(victim.offset) + victim.length - 100] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/tampered"))
            _ = try runForOutput(["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(server.accessKey):\(server.secretKey)",
                                  "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", "PUT", "--data-binary", "@\(dir)/tampered",
                                  "\(server.endpoint)/\(server.bucket)/\(storage.describe(sealed.pack).dropFirst("s3://assets/".count))"])
            let reader = ChunkReader(storage: storage)
            let damaged = #expect(throws: StoreError.self) { _ = try reader.read(victim) }
            #expect(damaged?.code == .corrupt && damaged?.message.contains(storage.describe(sealed.pack)) == true, "\(String(describing: damaged))")
            #expect(try reader.read(sealed.chunks[2]) == samples[2], "an undamaged chunk of the same pack still reads")
        }
    }

    @Test("a server that stops answering gives a transient error within the request bound; the retry decorator gives up in bounded time")
    func hungServer() throws {
        try withS3("s3-hung") { server, storage, _ in
            let sealed = try writePack(storage, samples)
            try server.pause()
            defer { server.resume() }
            let started = Date()
            let hung = #expect(throws: StoreError.self) { _ = try ChunkReader(storage: storage).read(sealed.chunks[1]) }
            #expect(hung?.code == .transient, "\(String(describing: hung))")
            #expect(Date().timeIntervalSince(started) < 15, "took \(Date().timeIntervalSince(started)) s")

            var policy = RetryPolicy()
            policy.totalTime = 3
            let retrying = RetryingPackStorage(storage, policy: policy)
            let bounded = Date()
            #expect(throws: StoreError.self) { _ = try retrying.size(of: sealed.pack) }
            #expect(Date().timeIntervalSince(bounded) < 20)

            server.resume()
            #expect(try retrying.size(of: sealed.pack) == sealed.size, "the storage recovers once the server answers again")
        }
    }
}

@Suite("S3 settings")
struct S3SettingsTests {
    @Test("settings come from the AWS variables first, then the profile in ~/.aws; errors name what is missing, never a secret")
    func resolution() throws {
        try withTemporaryDirectory("aws-files") { home in
            try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true)
            try Data("""
                [default]
                aws_access_key_id = DEFAULTKEY
                aws_secret_access_key = default-secret
                # a comment
                [team]
                aws_access_key_id=TEAMKEY
                aws_secret_access_key=team-secret
                aws_session_token=team-token
                """.utf8).write(to: URL(fileURLWithPath: home + "/.aws/credentials"))
            try Data("""
                [default]
                region = eu-west-3
                [profile team]
                region = ap-south-1
                endpoint_url = http://10.1.2.3:8333
                s3 =
                  addressing_style = path
                """.utf8).write(to: URL(fileURLWithPath: home + "/.aws/config"))

            let byProfile = try S3Settings.resolve(["HOME": home, "AWS_PROFILE": "team"])
            #expect(byProfile.accessKey == "TEAMKEY" && byProfile.secretKey == "team-secret" && byProfile.sessionToken == "team-token")
            #expect(byProfile.region == "ap-south-1" && byProfile.endpoint == "http://10.1.2.3:8333" && byProfile.pathStyle)

            let byEnvironment = try S3Settings.resolve(["HOME": home, "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "env-secret",
                                                        "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": "https://s3.us-west-2.amazonaws.com/"])
            #expect(byEnvironment.accessKey == "ENVKEY" && byEnvironment.region == "us-west-2" && !byEnvironment.pathStyle)
            #expect(byEnvironment.endpoint == "https://s3.us-west-2.amazonaws.com")

            let byDefault = try S3Settings.resolve(["HOME": home], endpoint: "http://localhost:9000")
            #expect(byDefault.accessKey == "DEFAULTKEY" && byDefault.region == "eu-west-3" && byDefault.pathStyle)

            let noEndpoint = #expect(throws: StoreError.self) { _ = try S3Settings.resolve(["HOME": home]) }
            #expect(noEndpoint?.message.contains("AWS_ENDPOINT_URL") == true)
            let noKeys = #expect(throws: StoreError.self) {
                _ = try S3Settings.resolve(["HOME": home + "/nowhere", "AWS_SECRET_ACCESS_KEY": "lonely-secret"], endpoint: "http://127.0.0.1:1")
            }
            #expect(noKeys?.message.contains("AWS_ACCESS_KEY_ID") == true && noKeys?.message.contains("lonely-secret") == false)
        }
    }

    @Test("the settings resolved from a profile sign requests the server accepts")
    func profileSignsRequests() throws {
        try withTemporaryDirectory("aws-profile-s3") { dir in
            let server = try S3Server(directory: dir + "/s3")
            defer { server.stop() }
            try Data("[ci]\naws_access_key_id = \(server.accessKey)\naws_secret_access_key = \(server.secretKey)\n".utf8)
                .write(to: URL(fileURLWithPath: dir + "/credentials"))
            let settings = try S3Settings.resolve(["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_PROFILE": "ci",
                                                   "AWS_ENDPOINT_URL": server.endpoint, "HOME": dir])
            let storage = S3PackStorage(settings: settings, bucket: server.bucket, prefix: "", scratchDirectory: dir)
            #expect(try storage.list().isEmpty)
        }
    }
}
