import Foundation

/// The JSON record of a projection stored with each sketch set (Spec/projection.md §5).
public struct ProjectionDefinition: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case rademacher, gaussian, sparse, srht }

    /// One parameter of the layout: dense (projected into the shared block) or Kronecker.
    public struct Parameter: Codable, Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var kind: String
        public var kOut: Int?
        public var kIn: Int?
        enum CodingKeys: String, CodingKey { case name, shape, kind, kOut = "k_out", kIn = "k_in" }

        public init(name: String, shape: [Int], kronecker: (kOut: Int, kIn: Int)? = nil) {
            self.name = name
            self.shape = shape
            kind = kronecker == nil ? "dense" : "kronecker"
            kOut = kronecker?.kOut
            kIn = kronecker?.kIn
        }
    }

    public var version = "1.0"
    public var generator = "philox4x32-10"
    public var seed: UInt64
    public var kind: Kind
    public var kDense: Int
    public var nonzeros: Int?
    /// SRHT block size (a power of two).
    public var block: Int?
    public var layout: [Parameter]

    enum CodingKeys: String, CodingKey { case version, generator, seed, kind, nonzeros, block, layout, kDense = "k_dense" }

    public init(seed: UInt64, kind: Kind, kDense: Int, nonzeros: Int? = nil, block: Int? = nil, layout: [Parameter]) {
        self.seed = seed
        self.kind = kind
        self.kDense = kDense
        self.nonzeros = nonzeros
        self.block = block
        self.layout = layout
    }

    /// Sketch width: one block per Kronecker parameter, then the shared dense block (§4).
    public var k: Int {
        layout.reduce(0) { $0 + (($1.kOut ?? 0) * ($1.kIn ?? 0)) } + (layout.contains { $0.kind == "dense" } ? kDense : 0)
    }

    /// Nil when `other` is the same projection; otherwise the first field that differs,
    /// with both values, for the error that refuses mixing them.
    public func firstDifference(from other: ProjectionDefinition) -> String? {
        let fields: [(String, String, String)] = [
            ("version", version, other.version), ("generator", generator, other.generator),
            ("seed", "\(seed)", "\(other.seed)"), ("kind", kind.rawValue, other.kind.rawValue),
            ("k_dense", "\(kDense)", "\(other.kDense)"), ("nonzeros", "\(nonzeros.map(String.init) ?? "none")", "\(other.nonzeros.map(String.init) ?? "none")"),
            ("block", "\(block.map(String.init) ?? "none")", "\(other.block.map(String.init) ?? "none")"),
            ("layout size", "\(layout.count)", "\(other.layout.count)"),
        ]
        if let (name, mine, theirs) = fields.first(where: { $0.1 != $0.2 }) {
            return "\(name): \(mine) here, \(theirs) there"
        }
        // Parameters in layout order, each field in the order of Spec/projection.md §5.
        func text(_ value: Int?) -> String { value.map(String.init) ?? "none" }
        for (position, (mine, theirs)) in zip(layout, other.layout).enumerated() {
            let parameterFields: [(String, String, String)] = [
                ("name", "\"\(mine.name)\"", "\"\(theirs.name)\""), ("shape", "\(mine.shape)", "\(theirs.shape)"),
                ("kind", mine.kind, theirs.kind), ("k_out", text(mine.kOut), text(theirs.kOut)), ("k_in", text(mine.kIn), text(theirs.kIn)),
            ]
            // Names compare as UTF-8 bytes (format §2.5), not by canonical equivalence.
            let differs = { (field: (String, String, String)) in
                field.0 == "name" ? !mine.name.utf8.elementsEqual(theirs.name.utf8) : field.1 != field.2
            }
            if let (name, here, there) = parameterFields.first(where: differs) {
                return "layout[\(position)].\(name) (parameter \(mine.name)): \(here) here, \(there) there"
            }
        }
        return nil
    }
}
