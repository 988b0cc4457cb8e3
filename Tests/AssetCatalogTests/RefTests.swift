import AssetTestSupport
import AssetCatalog
import Testing

@Suite("Ref.parse")
struct RefTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        let text: String
        let asset: String
        let selector: Ref.Selector
        let path: [String]
        var testDescription: String { text }
    }

    static let valid: [Valid] = [
        Valid(text: "data", asset: "data", selector: .latest, path: []),
        Valid(text: "data@v12", asset: "data", selector: .number(12), path: []),
        Valid(text: "data@v1", asset: "data", selector: .number(1), path: []),
        Valid(text: "data@v2147483647", asset: "data", selector: .number(2_147_483_647), path: []),
        Valid(text: "data@latest", asset: "data", selector: .latest, path: []),
        Valid(text: "data@prod", asset: "data", selector: .tag("prod"), path: []),
        Valid(text: "data@v3:a/b", asset: "data", selector: .number(3), path: ["a", "b"]),
        Valid(text: "data@v3:a//./b/", asset: "data", selector: .number(3), path: ["a", "b"]),
        Valid(text: "data:shards/0001.csv", asset: "data", selector: .latest, path: ["shards", "0001.csv"]),
        Valid(text: "my-data_1.2@rc-1:x", asset: "my-data_1.2", selector: .tag("rc-1"), path: ["x"]),
        Valid(text: "data@v3:", asset: "data", selector: .number(3), path: []),
        Valid(text: "data@v3:with space/é", asset: "data", selector: .number(3), path: ["with space", "é"]),
    ]

    @Test("valid references", arguments: valid)
    func parsesValid(_ c: Valid) throws {
        let ref = try Ref.parse(c.text)
        #expect(ref.asset == c.asset)
        #expect(ref.selector == c.selector)
        #expect(ref.path == c.path)
        // The canonical form parses back to the same reference.
        #expect(try Ref.parse(ref.description) == ref)
    }

    static let invalid: [String] = [
        "data@v0", "data@v99999999999999999999", "data@v2147483648", "data@v00",
        "a/b", "a/b@v1", "data/x@v1:y", "..", "../data", "data@v1:../x", "data@v1:a/../../b", "data:..",
        "da ta", " data", "data @v1", "", "@v1", "data@", "data@latest@v1",
        String(repeating: "a", count: 200), String(repeating: "a", count: 200) + "@v1",
        "data\u{0}", "da\u{7}ta", "data\n@v1", "data@pr\u{1B}od", "\u{7F}data", "data\u{FFFD}", "dätä",
        "data@workspaces", "data@-x", "data@.x",
    ]

    @Test("invalid references are refused with a one-line message", arguments: invalid)
    func refusesInvalid(_ text: String) {
        let error = #expect(throws: Ref.ParseError.self, "accepted \(text.debugDescription)") { try Ref.parse(text) }
        guard let message = error?.description else { return }
        #expect(!message.contains("\n") && !message.contains("\u{0}") && !message.contains("\u{1B}"),
                "message is not one safe line: \(message.debugDescription)")
        #expect(message.utf8.count < 400)
    }

    @Test("a 10,000-character name is refused and the message stays short")
    func refusesHugeName() {
        let text = String(repeating: "x", count: 10_000) + "@v1"
        let error = #expect(throws: Ref.ParseError.self) { try Ref.parse(text) }
        #expect((error?.description.utf8.count ?? 0) < 400)
        #expect(error?.description.contains("10003 bytes") == true)
    }

    @Test("a negative version number (data@v-1) is refused, not taken for a tag")
    func negativeVersionIsRefused() {
        #expect(throws: Ref.ParseError.self, "data@v-1 parsed as a reference") { try Ref.parse("data@v-1") }
        #expect(throws: Ref.ParseError.self, "data@v-1:x parsed as a reference") { try Ref.parse("data@v-1:x") }
        #expect(throws: Ref.ParseError.self, "v-1 parsed as a selector") { try Ref.parseSelectorPublic("v-1") }
    }

    @Test("selectors on their own")
    func selectors() throws {
        #expect(try Ref.parseSelectorPublic("v7") == .number(7))
        #expect(try Ref.parseSelectorPublic("latest") == .latest)
        #expect(try Ref.parseSelectorPublic("prod") == .tag("prod"))
        for bad in ["v0", "v99999999999999999999", "", "a b", "workspaces"] {
            #expect(throws: Ref.ParseError.self, "accepted selector \(bad.debugDescription)") { try Ref.parseSelectorPublic(bad) }
        }
    }
}
