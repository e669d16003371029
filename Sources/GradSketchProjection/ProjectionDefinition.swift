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

    /// The MAJOR part of `version` this implementation projects with (Spec/projection.md §5).
    public static let supportedMajorVersion = "1"

    /// Checks what the matrix needs before anything is projected (Spec/projection.md §1–§5):
    /// a known MAJOR version and generator, `nonzeros` exactly for sparse (1 ≤ s ≤ 2³⁰),
    /// `block` exactly for SRHT (a power of two), widths below 2³², and, for SRHT, block
    /// counters that stay in their range for every parameter of the layout.
    ///
    /// - Throws: ``ProjectionError`` naming the field, what was expected and what was found.
    public func validate() throws(ProjectionError) {
        guard Self.major(version) == Self.supportedMajorVersion else {
            throw ProjectionError("projection version \(version) is not supported: expected major version \(Self.supportedMajorVersion)")
        }
        guard generator == "philox4x32-10" else {
            throw ProjectionError("projection generator \(generator) is not supported: expected philox4x32-10")
        }
        guard kDense >= 0, kDense < 1 << 32 else { throw ProjectionError("k_dense must be in [0, 2^32), found \(kDense)") }
        switch (kind, nonzeros) {
        case (.sparse, let s?) where s >= 1 && s <= 1 << 30: break
        case (.sparse, let s): throw ProjectionError("a sparse projection needs nonzeros in [1, 2^30], found \(s.map(String.init) ?? "none")")
        case (_, nil): break
        case (_, let s?): throw ProjectionError("nonzeros is for sparse projections only, found \(s) with kind \(kind.rawValue)")
        }
        switch (kind, block) {
        case (.srht, let n?) where n > 0 && n & (n - 1) == 0: break
        case (.srht, let n): throw ProjectionError("an SRHT projection needs block, a power of two, found \(n.map(String.init) ?? "none")")
        case (_, nil): break
        case (_, let n?): throw ProjectionError("block is for SRHT projections only, found \(n) with kind \(kind.rawValue)")
        }
        for parameter in layout {
            let elements = parameter.shape.reduce(1) { $0.multipliedReportingOverflow(by: max($1, 0)).overflow ? Int.max : $0 * max($1, 0) }
            guard parameter.shape.allSatisfy({ $0 >= 0 }), elements < 1 << 32 else {
                throw ProjectionError("parameter \(parameter.name) has shape \(parameter.shape): expected fewer than 2^32 elements")
            }
            if parameter.kind == "kronecker" {
                guard parameter.shape.count == 2, let kOut = parameter.kOut, let kIn = parameter.kIn, kOut >= 1, kIn >= 1,
                      kOut < 1 << 32, kIn < 1 << 32 else {
                    throw ProjectionError("Kronecker parameter \(parameter.name) needs a 2-D shape and k_out, k_in ≥ 1, found shape \(parameter.shape), k_out \(parameter.kOut.map(String.init) ?? "none"), k_in \(parameter.kIn.map(String.init) ?? "none")")
                }
            } else if parameter.kind != "dense" {
                throw ProjectionError("parameter \(parameter.name) has kind \(parameter.kind): expected dense or kronecker")
            } else if kind == .srht, let n = block {
                try SRHT.checkCounters(d: elements, k: kDense, blockSize: n)
            }
        }
    }

    static func major(_ version: String) -> Substring { version.split(separator: ".", omittingEmptySubsequences: false).first ?? "" }

    /// Nil when `other` is the same projection; otherwise the first field that differs,
    /// with both values, for the error that refuses mixing them. Versions compare by their
    /// MAJOR part only (Spec/projection.md §5): a minor version never changes a matrix.
    public func firstDifference(from other: ProjectionDefinition) -> String? {
        let fields: [(String, String, String)] = [
            ("version", String(Self.major(version)), String(Self.major(other.version))), ("generator", generator, other.generator),
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
