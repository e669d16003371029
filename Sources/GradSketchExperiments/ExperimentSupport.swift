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

    /// Horizontal bars, one per (label, value), values in [0, maximum].
    public mutating func bars(_ title: String, _ items: [(String, Double)], maximum: Double, format: String = "%.3f") {
        let rowHeight = 22, width = 640, labelWidth = 220
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(items.count * rowHeight + 30)\" font-family=\"sans-serif\" font-size=\"12\">"
        svg += "<text x=\"0\" y=\"14\" font-weight=\"bold\">\(Self.escape(title))</text>"
        for (index, item) in items.enumerated() {
            let y = 24 + index * rowHeight
            let length = maximum > 0 ? Int(Double(width - labelWidth - 60) * max(0, min(1, item.1 / maximum))) : 0
            svg += "<text x=\"0\" y=\"\(y + 14)\">\(Self.escape(item.0))</text>"
            svg += "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(length)\" height=\"\(rowHeight - 6)\" fill=\"#4a7bb7\"/>"
            svg += "<text x=\"\(labelWidth + length + 4)\" y=\"\(y + 14)\">\(String(format: format, item.1))</text>"
        }
        body.append(svg + "</svg>")
    }

    public func html(title: String) -> String {
        """
        <!doctype html><html><head><meta charset="utf-8"><title>\(Self.escape(title))</title>
        <style>body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}table{border-collapse:collapse;margin:1em 0}\
        td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}</style></head>
        <body><h1>\(Self.escape(title))</h1>
        \(body.joined(separator: "\n"))
        </body></html>
        """
    }
}
