import AssetTestSupport

/// The mount tests use AssetTestSupport's `MountFixture` (directory `/tmp/assetfs-mount-NAME-XXXXXX`).
extension MountFixture {
    /// `backstop`: the whole test's budget, after which the mount is cut.
    convenience init(_ name: String, backstop: Double = 90) throws {
        try self.init(name, settings: Settings(label: "mount", backstop: backstop))
    }

    /// `relative` below the mount point ("" is the mount point).
    func path(_ relative: String) -> String { relative.isEmpty ? mnt : mnt + "/" + relative }
}
