/// Named, append-only schema migrations. A shipped migration is never edited: add a new one instead.
/// They use plain SQL only, never app types, so they mean the same thing forever.
enum Migrations {
    static let all: [(name: String, sql: String)] = [
        ("0001-initial", """
        CREATE TABLE store_info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE packs(
            id INTEGER PRIMARY KEY, name BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, created_ns INTEGER NOT NULL);
        CREATE TABLE chunks(
            id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, pack_id INTEGER NOT NULL REFERENCES packs(id),
            offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_length INTEGER NOT NULL,
            codec INTEGER NOT NULL, table_hash BLOB NOT NULL);
        CREATE INDEX chunks_by_pack ON chunks(pack_id);
        CREATE TABLE files(
            id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, chunk_count INTEGER NOT NULL);
        CREATE TABLE file_chunks(
            file_id INTEGER NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL, chunk_id INTEGER NOT NULL,
            PRIMARY KEY(file_id, seq)) WITHOUT ROWID;
        CREATE INDEX file_chunks_by_chunk ON file_chunks(chunk_id);
        CREATE TABLE trees(
            id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, entry_count INTEGER NOT NULL,
            file_count INTEGER NOT NULL, total_size INTEGER NOT NULL);
        CREATE TABLE entries(
            tree_id INTEGER NOT NULL, name BLOB NOT NULL, kind INTEGER NOT NULL, mode INTEGER NOT NULL,
            uid INTEGER NOT NULL, gid INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            target BLOB, file_id INTEGER, subtree_id INTEGER,
            PRIMARY KEY(tree_id, name)) WITHOUT ROWID;
        CREATE INDEX entries_by_file ON entries(file_id) WHERE file_id IS NOT NULL;
        CREATE INDEX entries_by_subtree ON entries(subtree_id) WHERE subtree_id IS NOT NULL;
        CREATE TABLE assets(
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ns INTEGER NOT NULL,
            next_version INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE versions(
            id INTEGER PRIMARY KEY, asset_id INTEGER NOT NULL REFERENCES assets(id), number INTEGER NOT NULL,
            parent INTEGER, created_ns INTEGER NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL,
            root_tree_id INTEGER NOT NULL REFERENCES trees(id), file_count INTEGER NOT NULL,
            logical_bytes INTEGER NOT NULL, new_bytes INTEGER NOT NULL, meta TEXT NOT NULL DEFAULT '[]',
            UNIQUE(asset_id, number));
        CREATE TABLE tags(
            asset_id INTEGER NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY(asset_id, name));
        CREATE TABLE audit(
            id INTEGER PRIMARY KEY, at_ns INTEGER NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL,
            asset TEXT NOT NULL, subject TEXT NOT NULL DEFAULT '', from_value TEXT, to_value TEXT,
            detail TEXT NOT NULL DEFAULT '');
        CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TABLE stat_cache(
            asset_id INTEGER NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, file_id INTEGER NOT NULL,
            PRIMARY KEY(asset_id, path)) WITHOUT ROWID;
        """),
        // AUTOINCREMENT: a workspace id is never reused, so a running mount can never mistake a new
        // workspace for a discarded one whose overlay it still has open.
        ("0002-workspaces", """
        CREATE TABLE workspaces(
            id INTEGER PRIMARY KEY AUTOINCREMENT, asset_id INTEGER NOT NULL REFERENCES assets(id), name TEXT NOT NULL,
            base_version INTEGER NOT NULL, base_tree_id INTEGER NOT NULL, created_ns INTEGER NOT NULL,
            created_by TEXT NOT NULL, UNIQUE(asset_id, name));
        """),
        // Leases of the processes working on the store, from every host, and packs the catalog no longer uses
        // whose objects gc deletes only after a grace period (two-phase deletion).
        ("0003-sessions-and-doomed-packs", """
        CREATE TABLE sessions(
            id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, pid INTEGER NOT NULL, kind TEXT NOT NULL,
            started_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL);
        CREATE TABLE doomed_packs(
            name BLOB PRIMARY KEY, size INTEGER NOT NULL, doomed_ns INTEGER NOT NULL) WITHOUT ROWID;
        """),
        // A workspace's overlay lives on the host that created it: say which ('' for older rows: unknown).
        ("0004-workspace-host", """
        ALTER TABLE workspaces ADD COLUMN host TEXT NOT NULL DEFAULT '';
        """),
        // Lineage (Documentation/Lineage.md): one JSON record per version, and its inputs by name for
        // `lineage --downstream`. Names, not ids: a record keeps naming an input version that was deleted.
        ("0005-lineage", """
        CREATE TABLE version_lineage(version_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
        CREATE TABLE version_inputs(
            version_id INTEGER NOT NULL, input_asset TEXT NOT NULL, input_version INTEGER NOT NULL, kind TEXT NOT NULL,
            PRIMARY KEY(version_id, input_asset, input_version, kind)) WITHOUT ROWID;
        CREATE INDEX version_inputs_by_input ON version_inputs(input_asset, input_version);
        """),
    ]

    static func apply(to db: SQLiteDatabase) throws {
        try db.execute("CREATE TABLE IF NOT EXISTS schema_migrations(name TEXT PRIMARY KEY, applied_ns INTEGER NOT NULL)")
        let applied = Set(try db.rows("SELECT name FROM schema_migrations") { $0.text(0) })
        let known = Set(all.map(\.name))
        if let unknown = applied.subtracting(known).sorted().first {
            throw CatalogError(.invalid, "catalog \(db.path) was written by a newer assetfs (migration \(unknown)); upgrade assetfs")
        }
        for migration in all where !applied.contains(migration.name) {
            try db.transaction {
                try db.execute(migration.sql)
                try db.run("INSERT INTO schema_migrations(name, applied_ns) VALUES(?, ?)",
                           [.text(migration.name), .int(Clock.nowNanoseconds())])
            }
        }
    }
}
