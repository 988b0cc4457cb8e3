import AssetTestSupport
import AssetStore
import Testing

@Suite("ContentHash")
struct ContentHashTests {
    @Test("hex round trip for many hashes")
    func hexRoundTrip() throws {
        for seed in UInt64(0)..<200 {
            let bytes = randomBytes(32, seed: seed)
            let hash = ContentHash(bytes: bytes)
            #expect(hash.bytes == bytes)
            let hex = hash.hex
            #expect(hex.utf8.count == 64)
            #expect(hex.allSatisfy { "0123456789abcdef".contains($0) })
            let parsed = try #require(ContentHash(hex: hex))
            #expect(parsed == hash)
            #expect(ContentHash(hex: hex.uppercased()) == hash)
            #expect(hash.description == hex)
            #expect(hex.hasPrefix(hash.short) && hash.short.count == 12)
            // Each hex digit pair is the byte it encodes.
            let pairs = stride(from: 0, to: 64, by: 2).map { i in UInt8(hex.dropFirst(i).prefix(2), radix: 16)! }
            #expect(pairs == bytes)
        }
    }

    @Test("malformed hex is refused")
    func malformedHex() {
        let good = ContentHash.of([1, 2, 3]).hex
        for bad in ["", String(good.dropLast()), good + "0", String(good.dropLast()) + "g", " " + String(good.dropFirst()),
                    String(good.dropLast()) + "\u{0}", String(repeating: "é", count: 32)] {
            #expect(ContentHash(hex: bad) == nil, "accepted \(bad.debugDescription)")
        }
    }

    @Test("SHA-256 of known inputs, whole or streamed")
    func knownDigests() {
        #expect(ContentHash.of(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ContentHash.of([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let data = randomBytes(1_000_003, seed: 9)
        var streamed = StreamingHasher()
        var offset = 0
        var step = 1
        while offset < data.count {
            let end = min(data.count, offset + step)
            streamed.update(Array(data[offset..<end]))
            offset = end
            step = step * 3 + 1
        }
        #expect(streamed.finalize() == ContentHash.of(data))
        #expect(ContentHash.of(data) != ContentHash.of(Array(data.dropLast())))
    }

    @Test("ordering follows the bytes")
    func ordering() {
        let hashes = (UInt64(0)..<100).map { ContentHash(bytes: randomBytes(32, seed: 1000 + $0)) }
        let byHash = hashes.sorted().map(\.bytes)
        let byBytes = hashes.map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) }
        #expect(byHash == byBytes)
        #expect(Set(hashes).count == 100)
    }
}
