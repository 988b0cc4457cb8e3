import AssetCatalog
import AssetPostgres
import AssetTestSupport
import Foundation
import Testing

@Suite("PostgresConnection against PostgreSQL 15")
struct PostgresConnectionTests {
    @Test("values round-trip in binary: raw bytes with NUL and non-UTF-8, big and negative integers, text, booleans, NULL")
    func roundTrip() throws {
        try withTemporaryDirectory("pg-roundtrip") { dir in
            let server = try PostgresServer(directory: dir + "/pg")
            defer { server.stop() }
            let db = try PostgresConnection(server.url)
            #expect(db.displayName.contains("127.0.0.1:\(server.port)/postgres"))
            try db.execute("CREATE TABLE t(id BIGINT PRIMARY KEY, name BYTEA NOT NULL, label TEXT, flag BOOLEAN)")
            let name: [UInt8] = [0x00, 0xFF, 0x2F, 0x0A, 0x80, 0x00]
            try db.query("INSERT INTO t VALUES($1, $2, $3, $4)", [.int(-5_000_000_000), .bytes(name), .text("héllo"), .bool(true)])
            try db.query("INSERT INTO t VALUES($1, $2, $3, $4)", [.int(Int64.max), .bytes([]), .null, .bool(false)])
            let rows = try db.query("SELECT id, name, label, flag, length(name)::int4 FROM t ORDER BY id")
            #expect(rows == [[.int(-5_000_000_000), .bytes(name), .text("héllo"), .bool(true), .int(6)],
                             [.int(Int64.max), .bytes([]), .null, .bool(false), .int(0)]])
        }
    }

    @Test("failures carry backend-neutral codes: unique violation conflict, serialization failure transient; a rolled-back transaction leaves nothing")
    func errorCodes() throws {
        try withTemporaryDirectory("pg-errors") { dir in
            let server = try PostgresServer(directory: dir + "/pg")
            defer { server.stop() }
            let db = try PostgresConnection(server.url)
            try db.execute("CREATE TABLE u(k TEXT PRIMARY KEY)")
            try db.query("INSERT INTO u VALUES($1)", [.text("a")])
            let duplicate = #expect(throws: CatalogError.self) { try db.query("INSERT INTO u VALUES($1)", [.text("a")]) }
            #expect(duplicate?.code == .conflict && duplicate?.cause == "SQLSTATE 23505", "\(String(describing: duplicate))")

            let retry = #expect(throws: CatalogError.self) {
                try db.transaction {
                    try db.query("INSERT INTO u VALUES($1)", [.text("b")])
                    try db.execute("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$")
                }
            }
            #expect(retry?.code == .transient, "\(String(describing: retry))")
            #expect(try db.query("SELECT count(*)::int8 FROM u") == [[.int(1)]], "the failed transaction's insert stayed")
        }
    }

    @Test("a server that is down is a transient error naming host and port; a new connection works once it is back")
    func serverDown() throws {
        try withTemporaryDirectory("pg-down") { dir in
            let server = try PostgresServer(directory: dir + "/pg")
            defer { server.stop() }
            server.stop()
            let down = #expect(throws: CatalogError.self) { _ = try PostgresConnection(server.url + "?connect_timeout=2") }
            #expect(down?.code == .transient && down?.message.contains("127.0.0.1:\(server.port)") == true, "\(String(describing: down))")
            try server.restart()
            #expect(try PostgresConnection(server.url).query("SELECT 1::int8") == [[.int(1)]])
        }
    }
}
