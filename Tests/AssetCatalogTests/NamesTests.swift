import AssetTestSupport
import AssetCatalog
import Testing

@Suite("Names")
struct NamesTests {
    @Test("valid asset names")
    func validAssetNames() {
        for name in ["a", "Z", "0", "data", "ImageNet-1k", "v1", "latest", "a.b_c-d", "1.0", String(repeating: "x", count: 128)] {
            #expect(Names.assetProblem(name) == nil, "refused \(name)")
            #expect(Names.isValid(name))
        }
    }

    @Test("invalid asset names name the rule and quote the name safely")
    func invalidAssetNames() {
        let bad = ["", "a/b", "..", ".", ".hidden", "-x", "_x", "a b", "a\tb", "a\nb", "a\u{0}b", "é", "data@v1", "data:x",
                   String(repeating: "x", count: 129), String(repeating: "y", count: 10_000), "\u{1B}[31mred"]
        for name in bad {
            let problem = Names.assetProblem(name)
            #expect(problem != nil, "accepted \(name.debugDescription)")
            guard let problem else { continue }
            #expect(problem.contains(Names.rule))
            #expect(!problem.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "unsafe message \(problem.debugDescription)")
            #expect(problem.utf8.count < 400)
        }
    }

    @Test("tag names: the asset rule, minus reserved words and version-like names")
    func tagNames() {
        for name in ["prod", "candidate", "v", "v1a", "V1", "ver2", "rc-1", "2024.01"] {
            #expect(Names.tagProblem(name) == nil, "refused tag \(name)")
        }
        for name in ["latest", "workspaces", "v12", "v0", "v1", "v007", "", "a/b", "..", String(repeating: "t", count: 129)] {
            #expect(Names.tagProblem(name) != nil, "accepted tag \(name.debugDescription)")
        }
        #expect(Names.tagProblem("latest")!.contains("reserved"))
        #expect(Names.tagProblem("v12")!.contains("v<digits>"))
    }

    @Test("quoted cuts long names and escapes control characters")
    func quoting() {
        #expect(Names.quoted("abc") == "'" + "abc" + "'")
        let escaped = Names.quoted("a\nb\u{7F}")
        #expect(escaped.hasPrefix("'a\\x") && escaped.hasSuffix("'"))
        #expect(!escaped.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        let long = Names.quoted(String(repeating: "z", count: 300))
        #expect(long.contains("(300 bytes)"))
        #expect(long.count < 120)
    }
}
