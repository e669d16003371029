import CGradSketchKernels
import GradSketchInterchange
import GradSketchSearch
public import GradSketchStore

/// In-Run Data Shapley (Wang et al. 2024) and TracIn from stored sketches, reported with the
/// sign "positive = helpful" (the paper's φ is a loss change, negative when helpful).
///
/// Store layout the methods read:
/// - a *training log* set: one row per (step t, example z in batch B_t), the sketch s_{t,z} of
///   z's loss gradient at w_t, id `<example>@<t>`, float columns `step` and `learning_rate`
///   (η_t, the per-example step: η / |B_t| when the batch loss is a mean);
/// - a *validation* set: one row per step, id `<t>`, the sketch v_t of the validation loss
///   gradient at w_t;
/// - optionally a *Hessian* set: one row per step, id `<t>`, the sketch u_t of H_t G_t, the
///   validation-loss Hessian at w_t times the batch's summed gradient G_t = Σ_{j∈B_t} g_{t,j}.
public enum InRunValuation {
    public struct Value: Sendable, Codable, Equatable {
        public let example: String
        public let firstOrder: Double
        public let secondOrder: Double
        /// first order − second order: the second-order In-Run Shapley value.
        public var total: Double { firstOrder - secondOrder }
        /// Steps in which the example appeared.
        public let appearances: Int
    }

    /// value_z = Σ_{t: z ∈ B_t} [ η_t ⟨v_t, s_{t,z}⟩ − (η_t² / 2) ⟨u_t, s_{t,z}⟩ ], one entry per
    /// example, in order of first appearance in the log.
    public static func values(log: SketchSet, validation: SketchSet, hessian: SketchSet? = nil,
                              stepColumn: String = "step", rateColumn: String = "learning_rate") throws -> [Value] {
        for other in [validation] + (hessian.map { [$0] } ?? []) where other.k != log.k {
            throw StoreError(.invalidInput, "set \(other.name) has k = \(other.k), the training log \(log.name) has k = \(log.k): expected the same projection")
        }
        if let mine = log.attributes["projection"] {
            for other in [validation] + (hessian.map { [$0] } ?? []) {
                if let theirs = other.attributes["projection"], theirs != mine {
                    throw StoreError(.invalidInput, "set \(other.name) was sketched with a different projection than \(log.name)")
                }
            }
        }
        let validationRows = try rowsByStep(validation)
        let hessianRows = try hessian.map(rowsByStep)
        let steps = try log.column(stepColumn), rates = try log.column(rateColumn)
        let ids = try log.ids()
        var order: [String] = []
        var totals: [UTF8Key: (first: Double, second: Double, count: Int)] = [:]  // example ids compare as bytes (Spec §2.5)
        var position = 0
        var dot: Float = 0
        try log.forEachLiveChunk { rows, physical in
            let count = physical.count
            for i in 0..<count {
                defer { position += 1 }
                let id = ids[position]
                guard let at = id.lastIndex(of: "@"), at != id.startIndex else {
                    throw StoreError(.invalidInput, "training-log row id \"\(id)\" is not <example>@<step>")
                }
                let example = String(id[..<at])
                let stepValue = steps[position], rate = rates[position]
                guard stepValue.isFinite, stepValue == stepValue.rounded(), rate.isFinite else {
                    throw StoreError(.invalidInput, "training-log row \"\(id)\" has step \(stepValue) and learning rate \(rate): expected an integer step and a finite rate")
                }
                let step = Int(stepValue)
                guard let v = validationRows[step] else {
                    throw StoreError(.invalidInput, "validation set \(validation.name) has no row for step \(step) (row \"\(id)\")")
                }
                let row = rows.baseAddress! + i * log.k
                gsk_dots_f32(row, 1, log.k, v, &dot, nil)
                var entry = totals[UTF8Key(example)] ?? (0, 0, 0)
                if entry.count == 0 { order.append(example) }
                entry.first += rate * Double(dot)
                if let hessianRows {
                    guard let u = hessianRows[step] else {
                        throw StoreError(.invalidInput, "Hessian set \(hessian!.name) has no row for step \(step)")
                    }
                    gsk_dots_f32(row, 1, log.k, u, &dot, nil)
                    entry.second += rate * rate / 2 * Double(dot)
                }
                entry.count += 1
                totals[UTF8Key(example)] = entry
            }
        }
        return order.map { example in
            let entry = totals[UTF8Key(example)]!
            return Value(example: example, firstOrder: entry.first, secondOrder: entry.second, appearances: entry.count)
        }
    }

    /// Rows of a per-step set keyed by the integer step in their id.
    static func rowsByStep(_ set: SketchSet) throws -> [Int: [Float]] {
        let ids = try set.ids()
        let rows = try set.floatRows()
        var result: [Int: [Float]] = [:]
        for (position, id) in ids.enumerated() {
            guard let step = Int(id) else {
                throw StoreError(.invalidInput, "set \(set.name) row id \"\(id)\" is not a step number")
            }
            result[step] = Array(rows[(position * set.k)..<((position + 1) * set.k)])
        }
        return result
    }
}

/// TracIn-CP: Σ_c η_c ⟨g_c(z), v_c⟩ over stored checkpoints, for every document of the sets
/// (matched by id), positive = helpful.
public enum TracInCheckpoints {
    public static func values(_ terms: [(set: SketchSet, validation: [Float], weight: Float)]) throws -> [(id: String, value: Double)] {
        let (ids, total) = try ExactSearch.scoresAcrossCheckpoints(terms.map { ($0.set, $0.validation, $0.weight) })
        return zip(ids, total).map { ($0, $1) }
    }
}
