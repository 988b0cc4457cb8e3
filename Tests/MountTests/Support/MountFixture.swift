import AssetTestSupport

/// The mount tests use AssetTestSupport's `MountFixture` (directory `/tmp/assetfs-mount-NAME-XXXXXX`).
extension MountFixture {
    /// `backstop`: the whole test's budget, after which the mount is cut.
    /// `backend`: a local store, or a shared one (S3 + PostgreSQL).
    convenience init(_ name: String, backstop: Double = 90, backend: StoreBackend = .local) throws {
        var settings = Settings(label: "mount", backstop: backstop)
        settings.backend = backend
        settings.keepVariable = "MOUNT_TESTS_KEEP"
        try self.init(name, settings: settings)
    }

    /// `relative` below the mount point ("" is the mount point).
    func path(_ relative: String) -> String { relative.isEmpty ? mnt : mnt + "/" + relative }
}
