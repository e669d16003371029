import Foundation
import GradSketchInterchange
public import GradSketchModels
public import GradSketchStore

/// Shared pieces of the Fashion-MNIST reproductions: data subsets, training, evaluation,
/// storing models, and the HTML report.
public struct ImageSubset: Sendable {
    public var images: [Float]
    public var labels: [Int]
    public var count: Int { labels.count }

    public init(images: [Float] = [], labels: [Int] = []) {
        self.images = images
        self.labels = labels
    }

    /// Rows `indices` of `data`.
    public init(_ data: FashionMNIST, _ indices: [Int]) {
        self = ImageSubset(images: data.images, labels: data.labels).picking(indices)
    }

    public func picking(_ indices: [Int]) -> ImageSubset {
        var result = ImageSubset()
        result.images.reserveCapacity(indices.count * 784)
        for index in indices { result.images += images[(index * 784)..<((index + 1) * 784)] }
        result.labels = indices.map { labels[$0] }
        return result
    }

    public static func + (a: ImageSubset, b: ImageSubset) -> ImageSubset {
        ImageSubset(images: a.images + b.images, labels: a.labels + b.labels)
    }
}

/// One reproduction: runs against a store, returns its numbers and writes its report section.
public protocol ReportedExperiment {
    associatedtype Configuration: Sendable
    associatedtype Outcome: Encodable & Sendable
    static var defaultConfiguration: Configuration { get }
    static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration: Configuration, log: (String) -> Void) throws -> Outcome
    static func report(_ outcome: Outcome, configuration: Configuration, into report: inout HTMLReport)
}

public enum Experiments {
    /// The reproductions `gradsketch reproduce` runs, by name, in report order.
    public static var all: [(name: String, type: any ReportedExperiment.Type)] { [
        ("select", SelectExperiment.self), ("density", DensityExperiment.self), ("inrun", InRunExperiment.self),
        ("gradex", GradExExperiment.self), ("paser", PASERExperiment.self),
    ] }

    /// Runs one reproduction with its default configuration, adds its section to `report`,
    /// and returns its numbers.
    public static func runAndReport<E: ReportedExperiment>(_ experiment: E.Type, store: Store, train: FashionMNIST, test: FashionMNIST,
                                                           report: inout HTMLReport, log: (String) -> Void) throws -> any Encodable & Sendable {
        let configuration = E.defaultConfiguration
        let outcome = try E.run(store: store, train: train, test: test, configuration: configuration, log: log)
        E.report(outcome, configuration: configuration, into: &report)
        return outcome
    }

    /// Trains `model` for `steps` minibatch steps over `data`, reshuffled each epoch with `seed`.
    public static func train(_ model: MLP, on data: ImageSubset, optimizer: Optimizer, steps: Int, batch: Int, seed: UInt64) -> MLP {
        var trainer = Trainer(model: model, optimizer: optimizer)
        var random = SeededRandom(seed: seed)
        var order = Array(0..<data.count)
        var cursor = order.count
        for _ in 0..<steps {
            var images: [Float] = [], labels: [Int] = []
            images.reserveCapacity(batch * 784)
            for _ in 0..<min(batch, data.count) {
                if cursor == order.count { random.shuffle(&order); cursor = 0 }
                let index = order[cursor]
                cursor += 1
                images += data.images[(index * 784)..<((index + 1) * 784)]
                labels.append(data.labels[index])
            }
            _ = trainer.step(images: images, labels: labels)
        }
        return trainer.model
    }

    /// Share of `data` the model classifies correctly.
    public static func accuracy(_ model: MLP, on data: ImageSubset) -> Double {
        var correct = 0
        var start = 0
        while start < data.count {
            let end = min(data.count, start + 2000)
            let trace = model.trace(images: Array(data.images[(start * 784)..<(end * 784)]), labels: Array(data.labels[start..<end]))
            for i in 0..<(end - start) where trace.predictions[i] == data.labels[start + i] { correct += 1 }
            start = end
        }
        return Double(correct) / Double(max(1, data.count))
    }

    /// Stores the model's parameters as tensor set `name` (float32) and returns the version committed.
    @discardableResult
    public static func store(_ model: MLP, as name: String, in store: Store, detail: String) throws -> Int {
        let buffers = model.shapes.map { shape -> (String, [Int], UnsafeMutableRawBufferPointer) in
            let values = model.parameters[shape.name]!
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: values.count * 4, alignment: 64)
            values.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return (shape.name, shape.shape, buffer)
        }
        defer { buffers.forEach { $0.2.deallocate() } }
        let inputs = try buffers.map { try TensorInput(name: $0.0, elementType: .float32, shape: $0.1, bytes: UnsafeRawBufferPointer($0.2)) }
        return try store.putTensors(name, inputs, detail: detail)
    }
}

/// A small HTML report: headings, paragraphs, tables and inline SVG bar charts.
public struct HTMLReport: Sendable {
    private var body: [String] = []
    public init() {}

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    public mutating func heading(_ text: String) { body.append("<h2>\(Self.escape(text))</h2>") }
    public mutating func paragraph(_ text: String) { body.append("<p>\(Self.escape(text))</p>") }

    public mutating func table(_ header: [String], _ rows: [[String]]) {
        var html = "<table><tr>" + header.map { "<th>\(Self.escape($0))</th>" }.joined() + "</tr>"
        for row in rows { html += "<tr>" + row.map { "<td>\(Self.escape($0))</td>" }.joined() + "</tr>" }
        body.append(html + "</table>")
    }

    /// Inserts `fragment` as it is (HTML another tool wrote, e.g. the LM suite's section).
    public mutating func embed(html fragment: String) { body.append(fragment) }

    /// Geometry of ``bars(_:_:standardErrors:maximum:format:)``, shared with its tests.
    public enum BarGeometry {
        public static let rowHeight = 22, width = 640, labelWidth = 220
        /// Pixels for a value of `maximum`.
        public static let plotWidth = width - labelWidth - 60
        /// Half the height of a whisker's end caps.
        public static let capHalfHeight = 4.0

        /// The x coordinate of `value` on a scale of [0, `maximum`], clamped to the plot.
        public static func x(_ value: Double, maximum: Double) -> Double {
            guard maximum > 0, value.isFinite else { return Double(labelWidth) }
            return Double(labelWidth) + Double(plotWidth) * max(0, min(1, value / maximum))
        }

        /// The y coordinate of the middle of bar `index`.
        public static func middle(of index: Int) -> Double { Double(24 + index * rowHeight + rowHeight / 2) }
    }

    /// Horizontal bars, one per (label, value), values in [0, maximum]. When `standardErrors`
    /// gives a value for a bar, a ±SE whisker (a line from value − SE to value + SE, clamped
    /// to the plot, with end caps) is drawn across its end and the label reads "value ± SE".
    public mutating func bars(_ title: String, _ items: [(String, Double)], standardErrors: [Double?]? = nil,
                              maximum: Double, format: String = "%.3f") {
        typealias G = BarGeometry
        func coordinate(_ value: Double) -> String { String(format: "%.1f", value) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(G.width)\" height=\"\(items.count * G.rowHeight + 30)\" font-family=\"sans-serif\" font-size=\"12\">"
        svg += "<text x=\"0\" y=\"14\" font-weight=\"bold\">\(Self.escape(title))</text>"
        for (index, item) in items.enumerated() {
            let y = 24 + index * G.rowHeight
            let length = maximum > 0 ? Int(Double(G.plotWidth) * max(0, min(1, item.1 / maximum))) : 0
            svg += "<text x=\"0\" y=\"\(y + 14)\">\(Self.escape(item.0))</text>"
            svg += "<rect x=\"\(G.labelWidth)\" y=\"\(y + 3)\" width=\"\(length)\" height=\"\(G.rowHeight - 6)\" fill=\"#4a7bb7\"/>"
            var text = String(format: format, item.1)
            var textX = Double(G.labelWidth + length + 4)
            if let errors = standardErrors, index < errors.count, let se = errors[index], se.isFinite, se >= 0 {
                let low = G.x(item.1 - se, maximum: maximum), high = G.x(item.1 + se, maximum: maximum)
                let middle = G.middle(of: index), top = middle - G.capHalfHeight, bottom = middle + G.capHalfHeight
                svg += "<g class=\"whisker\" stroke=\"#222\" stroke-width=\"1\">"
                svg += "<line x1=\"\(coordinate(low))\" y1=\"\(coordinate(middle))\" x2=\"\(coordinate(high))\" y2=\"\(coordinate(middle))\"/>"
                svg += "<line x1=\"\(coordinate(low))\" y1=\"\(coordinate(top))\" x2=\"\(coordinate(low))\" y2=\"\(coordinate(bottom))\"/>"
                svg += "<line x1=\"\(coordinate(high))\" y1=\"\(coordinate(top))\" x2=\"\(coordinate(high))\" y2=\"\(coordinate(bottom))\"/>"
                svg += "</g>"
                text += " ± " + String(format: format, se)
                textX = max(textX, high + 4)
            }
            svg += "<text x=\"\(coordinate(textX))\" y=\"\(y + 14)\">\(Self.escape(text))</text>"
        }
        body.append(svg + "</svg>")
    }

    /// The mean of `values` and its standard error (sample standard deviation with n − 1,
    /// over √n); the error is nil for fewer than two values.
    public static func meanAndStandardError(_ values: [Double]) -> (mean: Double, standardError: Double?) {
        guard !values.isEmpty else { return (.nan, nil) }
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        guard values.count > 1 else { return (mean, nil) }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        return (mean, (variance / n).squareRoot())
    }

    /// The whole page; `provenance`, when given, is a block right under the title.
    public func html(title: String, provenance: Provenance? = nil) -> String {
        """
        <!doctype html><html><head><meta charset="utf-8"><title>\(Self.escape(title))</title>
        <style>body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}table{border-collapse:collapse;margin:1em 0}\
        td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}</style></head>
        <body><h1>\(Self.escape(title))</h1>
        \(provenance.map(Self.provenanceHTML) ?? "")
        \(body.joined(separator: "\n"))
        </body></html>
        """
    }
}

extension HTMLReport {
    /// The provenance block: a table of what produced the report.
    static func provenanceHTML(_ provenance: Provenance) -> String {
        var rows: [(String, String)] = [
            ("gradsketch version", provenance.gradsketchVersion),
            ("git commit", provenance.commit),
            ("command line", provenance.commandLine),
            ("started (UTC)", provenance.started),
            ("total run time", String(format: "%.1f s", provenance.totalSeconds)),
        ]
        rows += provenance.experiments.map { ("run time: \($0.name)", String(format: "%.1f s", $0.seconds)) }
        return "<table class=\"provenance\">" + rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined() + "</table>"
    }
}
