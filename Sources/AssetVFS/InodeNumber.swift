import AssetStore

/// Inode numbers, all derived from what a node *is*, never from memory addresses, so they are stable across
/// remounts and equal across versions for an unchanged file.
///
/// Reserved ranges (the one place they are written down):
/// - 0: invalid. 1: the mount root.
/// - 2 ..< 2^16: reserved for future fixed nodes.
/// - 2^16 ..< 2^63: hashed nodes — the first 8 bytes of SHA-256 over a kind tag and the node's identity,
///   folded into this range. A collision needs two of the live nodes to agree on 47+ bits: with a million
///   live inodes the chance is about 1 in 10^7; it is detected (the table refuses to alias two identities)
///   and answered with EIO rather than wrong data.
public enum InodeNumber {
    public static let root: UInt64 = 1
    static let hashedBase: UInt64 = 1 << 16
    static let hashedSpan: UInt64 = (1 << 63) - (1 << 16)

    /// The identity of a node; different kinds never share an encoding.
    public enum Identity: Hashable, Sendable {
        case asset(String)
        case assetLink(asset: String, name: String)  // `latest` and tags
        case versionRoot(asset: String, version: Int)
        case directory(asset: String, version: Int, path: [UInt8])
        /// Files are named by path, content and attributes, not by version (`version` nil): an unchanged file
        /// keeps its inode, so jobs reading neighbouring versions share the page cache. A mount that records
        /// lineage names them by version too: an open carries only the inode, and lineage must know which
        /// version the job opened (Documentation/Lineage.md).
        case file(asset: String, version: Int?, path: [UInt8], fileID: Int64, mode: UInt32, uid: UInt32, gid: UInt32, mtimeNs: Int64)
        case symlink(asset: String, version: Int, path: [UInt8])
        case workspacesDirectory(asset: String)
        /// A node of a writable workspace, by the workspace's own inode number.
        case workspaceNode(workspace: Int64, local: UInt64)
    }

    public static func of(_ identity: Identity) -> UInt64 {
        var bytes: [UInt8] = []
        func add(_ s: String) { add(Array(s.utf8)) }
        func add(_ b: [UInt8]) {
            bytes.append(contentsOf: withUnsafeBytes(of: UInt32(b.count).littleEndian, Array.init))
            bytes.append(contentsOf: b)
        }
        func add(_ v: Int64) { bytes.append(contentsOf: withUnsafeBytes(of: v.littleEndian, Array.init)) }
        switch identity {
        case .asset(let a): add("asset"); add(a)
        case .assetLink(let a, let n): add("link"); add(a); add(n)
        case .versionRoot(let a, let v): add("version"); add(a); add(Int64(v))
        case .directory(let a, let v, let p): add("dir"); add(a); add(Int64(v)); add(p)
        case .file(let a, let v, let p, let f, let m, let u, let g, let t):
            add("file"); add(a); add(p); add(f); add(Int64(m)); add(Int64(u)); add(Int64(g)); add(t)
            if let v { add("version"); add(Int64(v)) }
        case .symlink(let a, let v, let p): add("symlink"); add(a); add(Int64(v)); add(p)
        case .workspacesDirectory(let a): add("workspaces"); add(a)
        case .workspaceNode(let w, let l): add("workspace-node"); add(w); add(Int64(bitPattern: l))
        }
        let digest = ContentHash.of(bytes)
        return hashedBase + digest.w0 % hashedSpan
    }
}
