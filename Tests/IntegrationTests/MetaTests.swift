import AssetTestSupport
import Foundation
import Testing

/// Experiment tracking on versions (issue 19): metrics as typed metadata, queried and used to tag.
@Suite("Version metadata: meta, --metrics-from, tag --best")
struct MetaTests {
    /// 30 versions of `model`, each with a metrics.json read by `--metrics-from`; returns each version's val.acc.
    static func thirtyVersions(_ dir: String, store: String) throws -> [Int: Double] {
        var acc: [Int: Double] = [:]
        for i in 1...30 {
            let src = dir + "/v\(i)"
            // Accuracies out of order so that the best ones are not simply the latest; epochs cross 9 -> 10.
            let a = Double((i * 37) % 100) / 100
            let metrics = #"{"val": {"acc": \#(a), "loss": \#(1 - a)}, "train": {"epochs": \#(i), "optimizer": "\#(i % 3 == 0 ? "adam" : "sgd")"}}"#
            try writeFile(src + "/metrics.json", Array(metrics.utf8))
            try writeFile(src + "/weights.bin", randomBytes(2000, seed: UInt64(i)))
            let r = try assetfsOK(["import", "model", src, "--metrics-from", "metrics.json", "-m", "run \(i)"], store: store)
            #expect(r.stdout.contains("model v\(i)"))
            acc[i] = a
        }
        return acc
    }

    @Test("sort, limit, where with numbers and strings, numbers compared as numbers, unknown keys named", arguments: StoreBackend.allCases)
    func query(backend: StoreBackend) throws {
        try withStore(backend, "meta-query") { dir, store in
            let acc = try Self.thirtyVersions(dir, store: store)
            let top = try #require(try json(try assetfsOK(["meta", "model", "--sort", "-val.acc", "--limit", "3", "--json"], store: store)) as? [[String: Any]])
            let expected = acc.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(3).map(\.key)
            #expect(top.compactMap { $0["version"] as? Int } == Array(expected), "\(top)")
            let first = try #require(top.first?["meta"] as? [String: Any])
            #expect(first["val.acc"] as? Double == acc[expected[0]], "val.acc is a JSON number: \(first)")
            #expect(first["train.optimizer"] is String)

            // Numbers compare as numbers: epochs 10..30 are > 9 (as text, "10" < "9").
            let over9 = try #require(try json(try assetfsOK(["meta", "model", "--where", "train.epochs>9", "--json"], store: store)) as? [[String: Any]])
            #expect(over9.compactMap { $0["version"] as? Int } == Array(10...30))
            let sorted = try #require(try json(try assetfsOK(["meta", "model", "--sort", "train.epochs", "--limit", "10", "--json"], store: store)) as? [[String: Any]])
            #expect(sorted.compactMap { $0["version"] as? Int } == Array(1...10))

            // Strings, and two conditions at once.
            let adam = try #require(try json(try assetfsOK(["meta", "model", "--where", "train.optimizer=adam", "--where", "val.acc>=0.5", "--json"], store: store)) as? [[String: Any]])
            #expect(adam.compactMap { $0["version"] as? Int } == (1...30).filter { $0 % 3 == 0 && acc[$0]! >= 0.5 })

            // An unknown key is a usage error that names the keys there are.
            let unknown = try assetfs(["meta", "model", "--where", "val.f1>0.5"], store: store)
            #expect(unknown.status == 2 && unknown.stderr.contains("val.f1") && unknown.stderr.contains("val.acc"), "\(unknown.describe(["meta"]))")

            // CSV: a header and one line per version, fields quoted where needed.
            let csv = try assetfsOK(["meta", "model", "--keys", "val.acc,train.optimizer", "--csv"], store: store)
            let lines = csv.stdout.split(separator: "\n")
            #expect(lines.first == "version,tags,parent,message,val.acc,train.optimizer")
            #expect(lines.count == 31)

            // tag --best / --lowest: the chosen version, in the audit log like any tag move.
            let best = try assetfsOK(["tag", "model", "--best", "val.acc", "best-acc"], store: store)
            #expect(best.stdout.contains("model@best-acc -> v\(expected[0])"), "\(best.stdout)")
            let lowestLoss = acc.max { ($0.value, $1.key) < ($1.value, $0.key) }!.key
            try assetfsOK(["tag", "model", "--lowest", "val.loss", "low-loss"], store: store)
            let shown = try #require(try json(try assetfsOK(["show", "model@low-loss", "--json"], store: store)) as? [String: Any])
            #expect(shown["version"] as? Int == lowestLoss)
            let log = try assetfsOK(["log", "model", "--json"], store: store)
            #expect(log.stdout.contains("best-acc") && log.stdout.contains("low-loss"))
            let noKey = try assetfs(["tag", "model", "--best", "val.f1", "x"], store: store)
            #expect(noKey.status == 2 && noKey.stderr.contains("val.acc"), "\(noKey.describe(["tag"]))")
        }
    }

    @Test("plot: an SVG that parses as XML with one point per version, a PNG that renders, sparklines that fit the terminal")
    func plot() throws {
        try withTemporaryDirectory("meta-plot") { dir in
            let store = try initStore(dir)
            let acc = try Self.thirtyVersions(dir, store: store)
            try assetfsOK(["tag", "model", "--best", "val.acc", "best"], store: store)
            let svg = dir + "/chart.svg"
            try assetfsOK(["plot", "model", "val.acc", "val.loss", "--out", svg], store: store)
            // Parsed by Python's XML parser (a reader that is not ours): the points and the tag marks.
            let parser = Process()
            parser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            parser.arguments = ["python3", "-c", """
                import json, sys, xml.etree.ElementTree as ET
                root = ET.parse(sys.argv[1]).getroot()
                ns = '{http://www.w3.org/2000/svg}'
                points = [c.attrib for c in root.iter(ns + 'circle') if c.get('class') == 'point']
                tags = [l.attrib for l in root.iter(ns + 'line') if l.get('class') == 'tag']
                print(json.dumps({'points': points, 'tags': len(tags)}))
                """, svg]
            let out = Pipe()
            parser.standardOutput = out
            try parser.run()
            let parsed = out.fileHandleForReading.readDataToEndOfFile()
            parser.waitUntilExit()
            #expect(parser.terminationStatus == 0, "the SVG does not parse as XML")
            let doc = try #require(try JSONSerialization.jsonObject(with: parsed) as? [String: Any])
            let points = try #require(doc["points"] as? [[String: String]])
            #expect(points.count == 60, "30 versions x 2 keys")
            let plotted = Dictionary(points.filter { $0["data-key"] == "val.acc" }.compactMap { p -> (Int, Double)? in
                guard let v = p["data-version"].flatMap(Int.init), let y = p["data-value"].flatMap(Double.init) else { return nil }
                return (v, y)
            }, uniquingKeysWith: { a, _ in a })
            #expect(plotted == acc)
            #expect(doc["tags"] as? Int == 1, "the tagged version is marked")

            let png = dir + "/chart.png"
            try assetfsOK(["plot", "model", "val.acc", "--out", png], store: store)
            let bytes = try readAll(png)
            #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] && bytes.count > 5000, "\(bytes.count) bytes")

            // At a 50-column terminal: one line per key, none wider than the terminal.
            let script = Process()
            script.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            script.arguments = ["-qec", "stty cols 50; \(Paths.assetfs) plot model val.acc val.loss --store \(store)", "/dev/null"]
            let pipe = Pipe()
            script.standardOutput = pipe
            script.standardInput = FileHandle.nullDevice
            try script.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            script.waitUntilExit()
            #expect(script.terminationStatus == 0, "\(output)")
            let lines = output.replacingOccurrences(of: "\r", with: "").split(separator: "\n").map(String.init)
            #expect(lines.count == 2 && lines.allSatisfy { $0.unicodeScalars.count <= 50 }, "\(lines) from \(output.debugDescription)")
            #expect(lines.first?.hasPrefix("val.acc") == true && lines.first?.contains(where: { "▁▂▃▄▅▆▇█".contains($0) }) == true, "\(lines)")
            let missing = try assetfs(["plot", "model", "val.f1"], store: store)
            #expect(missing.status == 2 && missing.stderr.contains("val.acc"), "\(missing.describe(["plot"]))")
        }
    }

    @Test("compare: metadata with deltas, file changes against the first version, inputs that differ")
    func compare() throws {
        try withTemporaryDirectory("meta-compare") { dir in
            let store = try initStore(dir)
            try writeFile(dir + "/d/x.txt", Array("data".utf8))
            try assetfsOK(["import", "data", dir + "/d"], store: store)
            try assetfsOK(["import", "data", dir + "/d"], store: store)
            let src = dir + "/src"
            try writeFile(src + "/a.txt", Array("aaaa".utf8))
            try writeFile(src + "/b.txt", Array("bbbbbbbb".utf8))
            try assetfsOK(["import", "exp", src, "--meta", "acc=0.5", "--meta", "opt=sgd", "--meta", "epochs=9", "--input", "data@v1"], store: store)
            try writeFile(src + "/a.txt", Array("aaaaaa".utf8))       // modified: +2 bytes
            try writeFile(src + "/c.txt", Array("ccc".utf8))          // added: 3 bytes
            try assetfsOK(["import", "exp", src, "--meta", "acc=0.75", "--meta", "opt=sgd", "--meta", "epochs=10", "--input", "data@v2"], store: store)
            try FileManager.default.removeItem(atPath: src + "/b.txt")  // removed: 8 bytes
            try assetfsOK(["import", "exp", src, "--meta", "acc=0.7", "--meta", "opt=adam", "--meta", "epochs=10", "--input", "data@v1"], store: store)

            let c = try #require(try json(try assetfsOK(["compare", "exp@v1", "exp@v2", "exp@v3", "--json"], store: store)) as? [String: Any])
            let meta = try #require(c["meta"] as? [[String: Any]])
            func key(_ name: String) -> [String: Any]? { meta.first { $0["key"] as? String == name } }
            let acc = try #require(key("acc")?["values"] as? [[String: Any]])
            #expect(acc.compactMap { $0["delta"] as? Double } == [0, 0.25, 0.2], "\(acc)")
            #expect(key("acc")?["differs"] as? Bool == true && key("opt")?["differs"] as? Bool == true)
            let epochs = try #require(key("epochs")?["values"] as? [[String: Any]])
            #expect(epochs.compactMap { $0["delta"] as? Double } == [0, 1, 1], "epochs compare as numbers: \(epochs)")
            let files = try #require(c["files"] as? [[String: Any]])
            #expect(files.count == 2)
            #expect(files[0]["added"] as? Int == 1 && files[0]["removed"] as? Int == 0 && files[0]["modified"] as? Int == 1)
            #expect(files[0]["addedBytes"] as? Int == 3 && files[0]["modifiedDelta"] as? Int == 2)
            #expect(files[1]["added"] as? Int == 1 && files[1]["removed"] as? Int == 1 && files[1]["removedBytes"] as? Int == 8)
            let inputs = try #require(c["inputs"] as? [[String: Any]])
            #expect(inputs[1]["added"] as? [String] == ["data@v2 (declared)"] && inputs[1]["removed"] as? [String] == ["data@v1 (declared)"])
            #expect((inputs[2]["added"] as? [String])?.isEmpty == true)
            let text = try assetfsOK(["compare", "exp@v1", "exp@v2"], store: store).stdout
            #expect(text.contains("0.75 (+0.25)") && text.contains("* acc") && text.contains("1 added"), "\(text)")
            let one = try assetfs(["compare", "exp@v1"], store: store)
            #expect(one.status == 2)
        }
    }

    @Test("--meta-file flattens nested JSON; --meta given on the command line wins over a file's key; bad JSON is refused")
    func metaFile() throws {
        try withTemporaryDirectory("meta-file") { dir in
            let store = try initStore(dir)
            try writeFile(dir + "/src/a.txt", Array("a".utf8))
            try writeFile(dir + "/params.json", Array(#"{"train": {"lr": 0.001, "layers": [64, 32], "amp": true}, "seed": 7, "note": null}"#.utf8))
            try assetfsOK(["import", "d", dir + "/src", "--meta-file", dir + "/params.json", "--meta", "seed=8"], store: store)
            let shown = try #require(try json(try assetfsOK(["show", "d", "--json"], store: store)) as? [String: Any])
            let meta = try #require(shown["meta"] as? [String: Any])
            #expect(meta["train.lr"] as? Double == 0.001)
            #expect(meta["train.layers.0"] as? Int == 64 && meta["train.layers.1"] as? Int == 32)
            #expect(meta["train.amp"] as? String == "true" && meta["note"] as? String == "null")
            #expect(meta["seed"] as? Int == 8, "--meta wins: \(meta)")
            // YAML (a params.yaml), flattened the same way.
            try writeFile(dir + "/params.yaml", Array("train:\n  lr: 0.01\n  optimizer: adam\n  layers: [128, 64]\nseed: 3\nfast: true\n".utf8))
            try assetfsOK(["import", "y", dir + "/src", "--meta-file", dir + "/params.yaml"], store: store)
            let yaml = try #require(try json(try assetfsOK(["show", "y", "--json"], store: store)) as? [String: Any])["meta"] as? [String: Any]
            #expect(yaml?["train.lr"] as? Double == 0.01 && yaml?["train.optimizer"] as? String == "adam", "\(String(describing: yaml))")
            #expect(yaml?["train.layers.1"] as? Int == 64 && yaml?["seed"] as? Int == 3 && yaml?["fast"] as? String == "true")
            try writeFile(dir + "/bad.json", Array("{not json".utf8))
            let bad = try assetfs(["import", "d", dir + "/src", "--meta-file", dir + "/bad.json"], store: store)
            #expect(bad.status != 0 && bad.stderr.contains("bad.json"), "\(bad.describe(["import"]))")
            #expect(try assetfsOK(["versions", "d", "--json"], store: store).stdout.contains("\"version\" : 2") == false)
        }
    }
}
