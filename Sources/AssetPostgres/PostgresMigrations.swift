import AssetCatalog

/// The PostgreSQL catalog's schema: the same tables, names and rules as the SQLite catalog's migrations (same
/// migration names), in PostgreSQL's types: names as raw `bytea`, 64-bit integers, and the audit log made
/// append-only by a trigger that refuses UPDATE, DELETE and TRUNCATE. Named and append-only: a shipped
/// migration is never edited; add a new one.
enum PostgresMigrations {
    static let all: [(name: String, sql: String)] = [
        ("0001-initial", """
        CREATE TABLE store_info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE packs(
            id BIGSERIAL PRIMARY KEY, name BYTEA NOT NULL UNIQUE, size BIGINT NOT NULL, created_ns BIGINT NOT NULL);
        CREATE TABLE chunks(
            id BIGSERIAL PRIMARY KEY, hash BYTEA NOT NULL UNIQUE, pack_id BIGINT NOT NULL REFERENCES packs(id),
            "offset" BIGINT NOT NULL, length BIGINT NOT NULL, raw_length BIGINT NOT NULL,
            codec INTEGER NOT NULL, table_hash BYTEA NOT NULL);
        CREATE INDEX chunks_by_pack ON chunks(pack_id);
        CREATE TABLE files(
            id BIGSERIAL PRIMARY KEY, hash BYTEA NOT NULL UNIQUE, size BIGINT NOT NULL, chunk_count BIGINT NOT NULL);
        CREATE TABLE file_chunks(
            file_id BIGINT NOT NULL, seq BIGINT NOT NULL, "offset" BIGINT NOT NULL, chunk_id BIGINT NOT NULL,
            PRIMARY KEY(file_id, seq));
        CREATE INDEX file_chunks_by_chunk ON file_chunks(chunk_id);
        CREATE TABLE trees(
            id BIGSERIAL PRIMARY KEY, hash BYTEA NOT NULL UNIQUE, entry_count BIGINT NOT NULL,
            file_count BIGINT NOT NULL, total_size BIGINT NOT NULL);
        CREATE TABLE entries(
            tree_id BIGINT NOT NULL, name BYTEA NOT NULL, kind INTEGER NOT NULL, mode BIGINT NOT NULL,
            uid BIGINT NOT NULL, gid BIGINT NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
            target BYTEA, file_id BIGINT, subtree_id BIGINT,
            PRIMARY KEY(tree_id, name));
        CREATE INDEX entries_by_file ON entries(file_id) WHERE file_id IS NOT NULL;
        CREATE INDEX entries_by_subtree ON entries(subtree_id) WHERE subtree_id IS NOT NULL;
        CREATE TABLE assets(
            id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ns BIGINT NOT NULL,
            next_version BIGINT NOT NULL DEFAULT 1);
        CREATE TABLE versions(
            id BIGSERIAL PRIMARY KEY, asset_id BIGINT NOT NULL REFERENCES assets(id), number BIGINT NOT NULL,
            parent BIGINT, created_ns BIGINT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL,
            root_tree_id BIGINT NOT NULL REFERENCES trees(id), file_count BIGINT NOT NULL,
            logical_bytes BIGINT NOT NULL, new_bytes BIGINT NOT NULL, meta TEXT NOT NULL DEFAULT '[]',
            UNIQUE(asset_id, number));
        CREATE TABLE tags(
            asset_id BIGINT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY(asset_id, name));
        CREATE TABLE audit(
            id BIGSERIAL PRIMARY KEY, at_ns BIGINT NOT NULL, "user" TEXT NOT NULL, action TEXT NOT NULL,
            asset TEXT NOT NULL, subject TEXT NOT NULL DEFAULT '', from_value TEXT, to_value TEXT,
            detail TEXT NOT NULL DEFAULT '');
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
        CREATE TRIGGER audit_append_only_rows BEFORE UPDATE OR DELETE ON audit
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        CREATE TABLE stat_cache(
            asset_id BIGINT NOT NULL, path BYTEA NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
            ctime_ns BIGINT NOT NULL, inode BIGINT NOT NULL, file_id BIGINT NOT NULL,
            PRIMARY KEY(asset_id, path));
        """),
        // Sequences never hand out a number twice: a workspace id is never reused (as AUTOINCREMENT in SQLite).
        ("0002-workspaces", """
        CREATE TABLE workspaces(
            id BIGSERIAL PRIMARY KEY, asset_id BIGINT NOT NULL REFERENCES assets(id), name TEXT NOT NULL,
            base_version BIGINT NOT NULL, base_tree_id BIGINT NOT NULL, created_ns BIGINT NOT NULL,
            created_by TEXT NOT NULL, UNIQUE(asset_id, name));
        """),
        ("0003-sessions-and-doomed-packs", """
        CREATE TABLE sessions(
            id BIGSERIAL PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL, kind TEXT NOT NULL,
            started_ns BIGINT NOT NULL, expires_ns BIGINT NOT NULL);
        CREATE TABLE doomed_packs(
            name BYTEA PRIMARY KEY, size BIGINT NOT NULL, doomed_ns BIGINT NOT NULL);
        """),
        ("0004-workspace-host", """
        ALTER TABLE workspaces ADD COLUMN host TEXT NOT NULL DEFAULT '';
        """),
        // Lineage, as SQLite's 0005 (Documentation/Lineage.md).
        ("0005-lineage", """
        CREATE TABLE version_lineage(version_id BIGINT PRIMARY KEY, record TEXT NOT NULL);
        CREATE TABLE version_inputs(
            version_id BIGINT NOT NULL, input_asset TEXT NOT NULL, input_version BIGINT NOT NULL, kind TEXT NOT NULL,
            PRIMARY KEY(version_id, input_asset, input_version, kind));
        CREATE INDEX version_inputs_by_input ON version_inputs(input_asset, input_version);
        """),
    ]

    /// An arbitrary constant: the advisory lock every host takes while it migrates, so two hosts opening a new
    /// catalog at once apply each migration exactly once.
    static let lockKey: Int64 = 0x6173_7365_7466_7331  // "assetfs1"

    /// Applies the migrations this catalog lacks, all in one transaction (PostgreSQL's DDL is transactional:
    /// a failure leaves the catalog as it was). Refuses a catalog that holds a migration this build does not know.
    static func apply(to db: PostgresConnection) throws {
        try db.transaction {
            try db.query("SELECT pg_advisory_xact_lock($1)", [.int(lockKey)])
            try db.execute("CREATE TABLE IF NOT EXISTS schema_migrations(name TEXT PRIMARY KEY, applied_ns BIGINT NOT NULL)")
            let applied = Set(try db.query("SELECT name FROM schema_migrations").compactMap { $0.first?.text })
            let known = Set(all.map(\.name))
            if let unknown = applied.subtracting(known).sorted().first {
                throw CatalogError(.invalid, "catalog \(db.displayName) was written by a newer assetfs (migration \(unknown)); upgrade assetfs")
            }
            for migration in all where !applied.contains(migration.name) {
                try db.execute(migration.sql)
                try db.query("INSERT INTO schema_migrations(name, applied_ns) VALUES($1, $2)",
                             [.text(migration.name), .int(Clock.nowNanoseconds())])
            }
        }
    }
}

extension PostgresConnection {
    /// Brings the catalog's schema up to date (see `PostgresMigrations`).
    public func migrate() throws { try PostgresMigrations.apply(to: self) }
}
