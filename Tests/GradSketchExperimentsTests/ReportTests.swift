import Foundation
import GradSketchExperiments
import GradSketchTestSupport
import Testing

/// The report's ±SE whiskers against coordinates worked out by hand from the chart's layout
/// (labels 220 px, plot 360 px, rows 22 px from y = 24), the standard error against a
/// hand-computed case, and the provenance block and its fields.
@Suite struct ReportTests {
    /// The attribute values of every `<line .../>` inside the whisker groups of `html`, as
    /// (x1, y1, x2, y2) in document order.
    static func whiskerLines(_ html: String) -> [[Double]] {
        var lines: [[Double]] = []
        for group in html.components(separatedBy: "<g class=\"whisker\"").dropFirst() {
            let body = group.components(separatedBy: "</g>")[0]
            for line in body.components(separatedBy: "<line ").dropFirst() {
                let values = ["x1", "y1", "x2", "y2"].map { name -> Double in
                    let start = line.range(of: "\(name)=\"")!.upperBound
                    return Double(line[start...].prefix { $0 != "\"" })!
                }
                lines.append(values)
            }
        }
        return lines
    }

    @Test func whiskersSpanValueMinusToPlusStandardErrorWithCaps() {
        var report = HTMLReport()
        // Bar 0: 0.5 ± 0.1 of 1 → x from 220 + 360·0.4 = 364 to 220 + 360·0.6 = 436, at the
        // middle of row 0: y = 24 + 11 = 35; caps 31…39.
        // Bar 1: no error → no whisker. Bar 2: 0.9 ± 0.25 → 0.65…1.15, clamped to the plot:
        // x from 220 + 360·0.65 = 454 to 580, at y = 24 + 2·22 + 11 = 79; caps 75…83.
        report.bars("t", [("a", 0.5), ("b", 0.7), ("c", 0.9)], standardErrors: [0.1, nil, 0.25], maximum: 1)
        let html = report.html(title: "x")
        let lines = Self.whiskerLines(html)
        #expect(lines.count == 6, "two whiskers of three lines each, found \(lines)")
        let expected: [[Double]] = [
            [364, 35, 436, 35], [364, 31, 364, 39], [436, 31, 436, 39],
            [454, 79, 580, 79], [454, 75, 454, 83], [580, 75, 580, 83],
        ]
        for (found, want) in zip(lines, expected) {
            for (a, b) in zip(found, want) { #expect(abs(a - b) < 1e-9, "line \(found), expected \(want)") }
        }
        #expect(html.contains(">0.500 ± 0.100<") && html.contains(">0.700<") && html.contains(">0.900 ± 0.250<"))
        // The bar itself is unchanged: 0.5 of 360 px.
        #expect(html.contains("<rect x=\"220\" y=\"27\" width=\"180\""))
    }

    @Test func barsWithoutErrorsDrawNoWhiskers() {
        var report = HTMLReport()
        report.bars("t", [("a", 0.5)], maximum: 1)
        #expect(!report.html(title: "x").contains("whisker"))
    }

    @Test func standardErrorUsesNMinusOne() {
        // Values 1, 2, 3, 6: mean 3, squared deviations 4 + 1 + 0 + 9 = 14, sample variance
        // 14 / 3, SE = sqrt(14 / 3 / 4) = sqrt(7 / 6).
        let summary = HTMLReport.meanAndStandardError([1, 2, 3, 6])
        #expect(summary.mean == 3)
        #expect(abs(summary.standardError! - (7.0 / 6.0).squareRoot()) < 1e-15)
        #expect(HTMLReport.meanAndStandardError([4]).standardError == nil)
        #expect(HTMLReport.meanAndStandardError([4]).mean == 4)
    }

    @Test func provenanceIsInTheHTMLAndRoundTripsThroughJSON() throws {
        let provenance = Provenance(gradsketchVersion: "0.1.0", commit: String(repeating: "a", count: 40),
                                    commandLine: Provenance.commandLine(["gradsketch-reproduce", "s", "--out", "my dir", "it's"]),
                                    started: Provenance.utcTimestamp(secondsSince1970: 1_800_000_000),
                                    totalSeconds: 12.34, experiments: [.init(name: "select", seconds: 5.5)])
        #expect(provenance.commandLine == "gradsketch-reproduce s --out 'my dir' 'it'\\''s'")
        #expect(provenance.started == "2027-01-15T08:00:00Z")
        let html = HTMLReport().html(title: "x", provenance: provenance)
        for text in ["gradsketch version", "0.1.0", String(repeating: "a", count: 40), "2027-01-15T08:00:00Z",
                     "12.3 s", "run time: select", "5.5 s", "'my dir'"] {
            #expect(html.contains(text), "\(text) missing from the provenance block")
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let object = try #require(try JSONSerialization.jsonObject(with: encoder.encode(provenance)) as? [String: Any])
        #expect(Set(object.keys) == ["gradsketch_version", "commit", "command_line", "started", "total_seconds", "experiments"])
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        #expect(try decoder.decode(Provenance.self, from: encoder.encode(provenance)) == provenance)
    }

    @Test func commitComesFromTheEnvironmentThenGitThenUnknown() throws {
        #expect(Provenance.resolveCommit(environment: ["GRADSKETCH_COMMIT": " abc123\n"], checkout: nil) == "abc123")
        #expect(Provenance.resolveCommit(environment: [:], checkout: nil) == "unknown")
        let scratch = try TemporaryDirectory()
        #expect(Provenance.resolveCommit(environment: [:], checkout: scratch.path) == "unknown", "not a git checkout")
        // This test runs from the source checkout: git's answer is its HEAD.
        let checkout = try #require(Provenance.sourceCheckout())
        let commit = Provenance.resolveCommit(environment: [:], checkout: checkout)
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        git.arguments = ["git", "-C", checkout, "rev-parse", "HEAD"]
        let pipe = Pipe()
        git.standardOutput = pipe
        try git.run()
        let head = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        git.waitUntilExit()
        #expect(commit == head && commit.count == 40)
    }
}
