import AssetCatalog
import AssetPostgres
import AssetTestSupport
import Dispatch
import Foundation
import Testing

@Suite("PostgreSQL catalog schema")
struct PostgresMigrationTests {
    @Test("migrations apply once, also when eight hosts open a new catalog at the same moment; a newer catalog is refused")
    func migrationsApplyOnce() throws {
        try withTemporaryDirectory("pg-migrate") { dir in
            let server = try PostgresServer(directory: dir + "/pg")
            defer { server.stop() }
            let url = server.url
            let failures = Failures()
            // Eight connections, as eight hosts would have, connected first, then migrating a new catalog at once.
            let hosts = try (0..<8).map { _ in UncheckedConnection(try PostgresConnection(url)) }
            DispatchQueue.concurrentPerform(iterations: hosts.count) { i in
                do { try hosts[i].connection.migrate() } catch { failures.add("\(error)") }
            }
            let first = try PostgresConnection(url), second = try PostgresConnection(url)
            #expect(failures.all.isEmpty, "\(failures.all)")
            let names = try first.query("SELECT name FROM schema_migrations ORDER BY name").compactMap { $0.first?.text }
            #expect(names == ["0001-initial", "0002-workspaces", "0003-sessions-and-doomed-packs", "0004-workspace-host", "0005-lineage"])
            try first.migrate()
            #expect(try first.query("SELECT count(*)::int8 FROM schema_migrations") == [[.int(5)]])

            try first.query("INSERT INTO schema_migrations VALUES($1, 0)", [.text("9999-from-the-future")])
            let refused = #expect(throws: CatalogError.self) { try second.migrate() }
            #expect(refused?.code == .invalid && refused?.message.contains("9999-from-the-future") == true)
        }
    }

    @Test("the audit log refuses UPDATE, DELETE and TRUNCATE; names are raw bytes, unique as bytes")
    func schemaRules() throws {
        try withTemporaryDirectory("pg-schema") { dir in
            let server = try PostgresServer(directory: dir + "/pg")
            defer { server.stop() }
            let db = try PostgresConnection(server.url)
            try db.migrate()
            try db.query("INSERT INTO audit(at_ns, \"user\", action, asset) VALUES(1, 'alice', 'tag', 'data')")
            for statement in ["UPDATE audit SET \"user\" = 'mallory'", "DELETE FROM audit", "TRUNCATE audit"] {
                let refused = #expect(throws: CatalogError.self, "\(statement)") { try db.execute(statement) }
                #expect(refused?.message.contains("append-only") == true, "\(statement): \(String(describing: refused))")
            }
            #expect(try db.query("SELECT \"user\" FROM audit") == [[.text("alice")]])

            try db.query("INSERT INTO trees(hash, entry_count, file_count, total_size) VALUES($1, 0, 0, 0)", [.bytes([1])])
            let names: [[UInt8]] = [[0xFF, 0xFE, 0x0A], [0xFF, 0xFE, 0x0B], Array("é".utf8), [0x65, 0xCC, 0x81]]
            for name in names {
                try db.query("INSERT INTO entries(tree_id, name, kind, mode, uid, gid, size, mtime_ns) VALUES(1, $1, 0, 420, 0, 0, 0, 0)",
                             [.bytes(name)])
            }
            let again = #expect(throws: CatalogError.self) {
                try db.query("INSERT INTO entries(tree_id, name, kind, mode, uid, gid, size, mtime_ns) VALUES(1, $1, 0, 420, 0, 0, 0, 0)",
                             [.bytes(names[0])])
            }
            #expect(again?.code == .conflict)
            let stored = try db.query("SELECT name FROM entries ORDER BY name").compactMap { $0.first?.bytes }
            #expect(Set(stored) == Set(names) && stored.count == 4)
        }
    }
}

private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []  // Protected by `lock`.
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}

/// One connection per thread: each is used by exactly one iteration.
private struct UncheckedConnection: @unchecked Sendable {
    let connection: PostgresConnection
    init(_ connection: PostgresConnection) { self.connection = connection }
}
