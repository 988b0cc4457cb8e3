import AssetTestSupport
import AssetCatalog
import AssetRepository
import AssetStore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Opens the same store again, as another host would: its own catalog connection, the same catalog rows.
private func secondHost(_ repo: Repository) throws -> Repository {
    try Repository.open(at: repo.root)
}

@Suite("Sessions and two-phase pack deletion")
struct SessionTests {
    @Test("an import's session keeps gc from starting on another host and the other way round; a dead holder's lease expires")
    func writersAndGCExcludeEachOther() throws {
        try withRepository("sessions") { a, _ in
            let b = try secondHost(a)
            let importing = try StoreSession.open(a, kind: .import, excluding: [.gc], lease: 5)
            let blocked = #expect(throws: RepositoryError.self) {
                _ = try StoreSession.open(b, kind: .gc, excluding: SessionKind.writers.union([.gc]), wait: 0.3)
            }
            #expect(blocked?.kind == .conflict && blocked?.message.contains("import on ") == true
                    && blocked?.message.contains("pid \(getpid())") == true, "\(String(describing: blocked))")
            importing.close()

            let gc = try StoreSession.open(b, kind: .gc, excluding: SessionKind.writers.union([.gc]), wait: 0)
            #expect(throws: RepositoryError.self) { _ = try StoreSession.open(a, kind: .commit, excluding: [.gc], wait: 0) }
            // A mount only reads: it starts beside gc.
            let mount = try StoreSession.open(a, kind: .mount, excluding: [], wait: 0)
            gc.close()
            mount.close()
            #expect(try a.catalog.liveSessions().isEmpty)

            // A process that died holding a lease: nobody renews it, and it blocks only until it expires.
            let soon = Clock.nowNanoseconds() + 400_000_000
            guard case .opened = try a.catalog.openSession(NewSession(host: "crashed-host", pid: 7, kind: .import, expiresNs: soon),
                                                           excluding: []) else { throw TestFailure("could not open the dead session") }
            let waited = Date()
            let late = try StoreSession.open(b, kind: .gc, excluding: SessionKind.writers, wait: 5)
            #expect(Date().timeIntervalSince(waited) >= 0.2, "gc did not wait for the dead import's lease")
            late.close()

            // A process of this host that is gone (it exited without closing its session) is not waited for.
            let child = try ChildProcess.spawn(["true"], scratch: NSTemporaryDirectory())
            _ = child.wait(timeout: 10)
            let later = Clock.nowNanoseconds() + 60_000_000_000
            guard case .opened = try a.catalog.openSession(NewSession(host: StoreSession.hostName(), pid: child.pid, kind: .commit, expiresNs: later),
                                                           excluding: []) else { throw TestFailure("could not open the orphaned session") }
            let quick = Date()
            let unblocked = try StoreSession.open(b, kind: .gc, excluding: SessionKind.writers, wait: 5)
            #expect(Date().timeIntervalSince(quick) < 1, "gc waited for a session whose process is gone")
            unblocked.close()
        }
    }

    @Test("the heartbeat keeps a lease alive past its length; a lease taken away makes the holder invalid and refuse to record")
    func heartbeatAndLostLease() throws {
        try withRepository("heartbeat") { repo, _ in
            // A lease of 1.5 s renewed every 0.5 s, watched for 3.5 s: it outlives its length only by renewals, with
            // room for a busy machine to be a second late.
            let session = try StoreSession.open(repo, kind: .import, excluding: [], lease: 1.5)
            Thread.sleep(forTimeInterval: 3.5)
            #expect(try repo.catalog.liveSessions().map(\.id) == [session.info.id], "the lease was not renewed")
            #expect(session.isValid)

            // Another host decided this one was gone (its lease row removed, as expiry does): the next beat finds out.
            try secondHost(repo).catalog.closeSession(session.info.id)
            let noticed = poll(seconds: 3) { !session.isValid }
            #expect(noticed != nil, "the session did not notice it lost its lease")
            let refused = #expect(throws: RepositoryError.self) { try session.requireValid("import") }
            #expect(refused?.message.contains("nothing was recorded") == true)
            session.close()
        }
    }

    @Test("gc forgets dead packs at once and deletes them only after the grace period; young unrecorded packs wait too")
    func gracePeriod() throws {
        try withRepository("grace") { repo, dir in
            let a = randomBytes(6_000_000, seed: 81), b = randomBytes(3_000_000, seed: 82)
            try makeDir(dir + "/v1")
            try writeFile(dir + "/v1/a.bin", a)
            try makeDir(dir + "/v2")
            try writeFile(dir + "/v2/b.bin", b)
            try importTree(repo, "data", dir + "/v1")
            try importTree(repo, "data", dir + "/v2")
            let expected = try snapshot(dir + "/v2")
            let v1Pack = try #require(try repo.catalog.packs().first)
            try repo.catalog.deleteVersion(asset: "data", number: 1, user: "tester")
            // A pack an import on another host has stored but not yet recorded.
            let writer = PackWriter(storage: repo.storage)
            let plain: [UInt8] = [1, 2, 3]
            try writer.append(plain.withUnsafeBytes { ChunkRecord.encode($0, id: ContentHash.of(plain), compressor: ZstdCompressor()) })
            let unrecorded = try writer.seal()

            var gc = GarbageCollector(repo: repo)
            gc.gracePeriod = 3600
            let first = try gc.run()
            #expect(first.packsForgotten == 1 && first.packsDeleted == 0 && first.orphanPacksDeleted == 0, "\(first)")
            #expect(first.packsWaiting == 2 && first.bytesWaiting == v1Pack.size + unrecorded.size, "\(first)")
            #expect(try repo.storage.size(of: v1Pack.id) == v1Pack.size, "the forgotten pack was deleted before its grace period")
            #expect(try repo.storage.size(of: unrecorded.pack) != nil, "a young unrecorded pack was deleted")
            #expect(!(try repo.catalog.packs().map(\.id)).contains(v1Pack.id))
            #expect(try repo.catalog.doomedPacks().map(\.id) == [v1Pack.id])
            try export(repo, "data", 2, to: dir + "/out")
            #expect(differences(expected, try snapshot(dir + "/out")) == [])
            #expect(try Verifier(repo: repo).verify(nil).ok)

            gc.gracePeriod = 0
            let second = try gc.run()
            #expect(second.packsDeleted == 1 && second.orphanPacksDeleted == 1 && second.packsWaiting == 0, "\(second)")
            #expect(try repo.storage.size(of: v1Pack.id) == nil && repo.storage.size(of: unrecorded.pack) == nil)
            #expect(try repo.catalog.doomedPacks().isEmpty)
            #expect(Set(try repo.storage.list().map(\.id)) == Set(try repo.catalog.packs().map(\.id)))
            #expect(try Verifier(repo: repo).verify(nil).ok)
        }
    }
}
