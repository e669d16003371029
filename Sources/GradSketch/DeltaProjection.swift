import Foundation
import GradSketchProjection
import GradSketchStore

extension Snapshot {
    /// Tensor set `name` (a weight delta) of this snapshot projected with `target`'s own
    /// projection (Spec §8), negated when asked: a delta stored as finetuned − base then
    /// becomes base − finetuned, the direction SELECT matches rows against.
    ///
    /// - Throws: `.invalidInput` if the set records no projection or the tensors do not fit
    ///   it, `.notFound` for an unknown tensor set.
    func projectedDelta(_ name: String, for target: SketchSet, negate: Bool) throws -> [Float] {
        guard let stored = target.attributes["projection"] else {
            throw StoreError(.invalidInput, "set \(target.name) records no projection, so a delta cannot be projected to match it")
        }
        let definition: ProjectionDefinition
        do {
            definition = try JSONDecoder().decode(ProjectionDefinition.self, from: Data(stored.jsonText.utf8))
        } catch {
            throw StoreError(.invalidInput, "set \(target.name) records a projection this version cannot read: \(error)")
        }
        let tensors = try tensorSet(name)
        let values = try tensors.entry.tensors.map { (name: $0.name, values: try tensors.tensor(named: $0.name).floats()) }
        var query: [Float]
        do {
            query = try Projector.projectTensors(values, definition: definition)
        } catch let error as ProjectionError {
            throw StoreError(.invalidInput, "tensor set \(name) does not fit set \(target.name)'s projection: \(error.description)")
        }
        if negate { query = query.map { -$0 } }
        guard query.count == target.k else {
            throw StoreError(.invalidInput, "the projected delta has \(query.count) values, set \(target.name) has k = \(target.k)")
        }
        return query
    }
}
