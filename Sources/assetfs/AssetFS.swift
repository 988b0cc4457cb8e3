import ArgumentParser
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation

@main
struct AssetFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assetfs",
        abstract: "Every version of every ML dataset and model as a plain, immutable path.",
        discussion: """
            Store: --store PATH or s3://BUCKET/PREFIX, else $ASSETFS_STORE, else \(StoreOptions.defaultPath).
            References: data (latest), data@v12, data@latest, data@prod (a tag), data@v12:path/inside.
            Exit status: 0 ok, 1 failure, 2 usage error.

            Example: assetfs import data ./dataset -m "first cut" --tag prod
            """,
        version: AssetFSVersion.string,
        subcommands: [
            Init.self, Import.self, Assets.self, Versions.self, Show.self, Ls.self, Cat.self, Diff.self,
            Tag.self, Untag.self, Export.self, Verify.self, Stats.self, Delete.self, GC.self, Log.self,
            Mount.self, Umount.self, WorkspaceCommand.self, Commit.self, Prefetch.self, Cache.self, LineageCommand.self, RunCommand.self, MetaCommand.self, PlotCommand.self, CompareCommand.self,
        ]
    )

    /// The options every command shares, accepted before the subcommand as well (`assetfs --store S versions
    /// data`, like `git -C`, `restic -r`, `kubectl -n`) and shown once in `assetfs --help`. ArgumentParser hands
    /// the value parsed here to each subcommand's `@OptionGroup var store: StoreOptions` (same type), and that
    /// group still takes the options after the subcommand; when both are given, the last one wins.
    @OptionGroup var global: StoreOptions

    static func main() {
        // Chunk buffers are 0.1-4 MiB and short-lived: keep them on the heap instead of a fresh mmap (and page
        // zeroing) per allocation, which cost a third of import time in system CPU.
        _ = mallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)  // 32 MiB is glibc's maximum on 64-bit
        _ = mallopt(-1 /* M_TRIM_THRESHOLD */, 128 << 20)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as RepositoryError {
            fail(error.message, usage: error.kind == .usage)
        } catch let error as CatalogError {
            fail(error.message, usage: false)
        } catch let error as StoreError {
            // A missing endpoint or credentials is a matter of how assetfs was called.
            fail(error.message, usage: error.code == .invalidArgument)
        } catch let error as Ref.ParseError {
            fail(error.description, usage: true)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                // ArgumentParser's usage errors exit 64; this project's contract is 2 for usage errors.
                // One line naming the problem; `--help` has the rest.
                let text = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                fail(text.hasPrefix("Error: ") ? String(text.dropFirst(7)) : text, usage: true)
            }
            exit(withError: error)
        }
    }

    static func fail(_ message: String, usage: Bool) -> Never {
        FileHandle.standardError.write(Data("assetfs: error: \(message)\n".utf8))
        Foundation.exit(usage ? 2 : 1)
    }
}

enum AssetFSVersion {
    static let string = "0.1.0"
}

/// glibc's mallopt: <malloc.h> is not part of Swift's Glibc module.
@_silgen_name("mallopt") func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
