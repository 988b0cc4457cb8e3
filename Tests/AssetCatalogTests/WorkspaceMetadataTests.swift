@testable import AssetCatalog
import AssetTestSupport
import Testing

@Suite("Workspace metadata")
struct WorkspaceMetadataTests {
    @Test("a workspace made before special files and access times opens: its nodes keep their rows (atime = mtime) and gain rdev; both round-trip")
    func rdevColumnAdded() throws {
        try withTemporaryDirectory("ws-meta") { dir in
            let path = dir + "/meta.sqlite"
            // The nodes table as workspaces had it before the rdev column, with one node in it.
            do {
                let old = try SQLiteDatabase(path: path)
                try old.execute("""
                    CREATE TABLE nodes(
                        ino INTEGER PRIMARY KEY, kind INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL,
                        gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
                        target BLOB, base_file_id INTEGER, base_limit INTEGER NOT NULL, base_tree_id INTEGER,
                        has_delta INTEGER NOT NULL, nlink INTEGER NOT NULL);
                    INSERT INTO nodes VALUES(7, 0, 420, 0, 0, 5, 6, 11, NULL, NULL, 0, NULL, 1, 1);
                    """)
            }
            let meta = try WorkspaceMetadata(path: path)
            let kept = try #require(try meta.node(7))
            #expect(kept.kind == .file && kept.size == 11 && kept.mode == 0o644 && kept.rdev == 0 && kept.atimeNs == 5 && kept.ctimeNs == 6)
            let device = WorkspaceNode(ino: 8, kind: .blockDevice, mode: 0o600, uid: 0, gid: 6, mtimeNs: 1, ctimeNs: 2, size: 0,
                                       rdev: 0x7_0000_00c8, atimeNs: -31_536_000_000_000_000)
            try meta.transaction { try meta.put(device) }
            #expect(try meta.node(8) == device)
            // Opening again (the column is there now) changes nothing.
            #expect(try WorkspaceMetadata(path: path).node(8) == device)
        }
    }
}
