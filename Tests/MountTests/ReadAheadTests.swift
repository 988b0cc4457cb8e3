import AssetTestSupport
import Foundation
import Testing

@Suite("Read-ahead of a shared store's mount")
struct ReadAheadTests {
    @Test("walking a directory in name order asks the catalog for the files' chunk lists in batches, not once per file, and every file reads exact")
    func chunkListsInBatches() throws {
        let f = try MountFixture("readahead-lists", settings: .sharedStore())
        defer { f.close() }
        let count = 600
        var contents: [String: [UInt8]] = [:]
        for i in 0..<count {
            let name = String(format: "f%04d.json", i)
            contents[name] = Array("{\"id\": \(i), \"label\": \"\(String(repeating: "x", count: i % 97))\"}\n".utf8)
            try writeSourceFile(f.src + "/meta", name, contents[name]!, mtime: 1_700_000_000)
        }
        try f.importVersion()
        try f.mount()
        try f.io("read every file in name order") { () throws in
            for name in contents.keys.sorted() {
                let expected = contents[name]!
                #expect(sameBytes(try directRead(f.path("data/v1/meta/" + name), size: expected.count), expected), "\(name)")
            }
        }
        let json = try #require(try JSONSerialization.jsonObject(with: try f.cliOK(["stats", "--mount", f.mnt, "--json"]).stdout) as? [String: Any])
        let queries = try #require((json["catalog"] as? [String: Any])?["queries"] as? Int)
        // One query per file (600 and more) before chunk lists were asked for 256 files at a time.
        #expect(queries < count / 4, "\(queries) catalog queries for \(count) files read in name order")
    }
}
