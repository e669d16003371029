extension ProjectionDefinition {
    /// The stream names the layout's parameters draw from, in layout order
    /// (Spec/projection.md §4): a dense parameter uses its name, a Kronecker parameter
    /// `NAME/out` and `NAME/in`.
    public var streamNames: [(parameter: String, stream: String)] {
        layout.flatMap { parameter in
            parameter.kind == "kronecker"
                ? [(parameter.name, parameter.name + "/out"), (parameter.name, parameter.name + "/in")]
                : [(parameter.name, parameter.name)]
        }
    }

    /// Refuses a layout in which two parameters share a name or a stream (Spec/projection.md
    /// §4): a dense tensor `X/in` next to a Kronecker parameter `X` would draw the same random
    /// numbers as `X`'s input factor, so the two projections would be correlated. Names and
    /// streams compare as UTF-8 bytes, as their stream ids (SHA-256 of the bytes) do.
    ///
    /// - Throws: `ProjectionError` naming both parameters and the shared name.
    public func checkStreamsAreDistinct() throws {
        var names: [[UInt8]: String] = [:]
        for parameter in layout {
            if names.updateValue(parameter.name, forKey: Array(parameter.name.utf8)) != nil {
                throw ProjectionError("the layout names parameter \"\(parameter.name)\" twice: expected each parameter once")
            }
        }
        var owners: [[UInt8]: String] = [:]
        for (parameter, stream) in streamNames {
            if let owner = owners.updateValue(parameter, forKey: Array(stream.utf8)) {
                throw ProjectionError("parameters \"\(owner)\" and \"\(parameter)\" would both draw from stream \"\(stream)\": expected distinct streams (rename the tensor \"\(stream)\" or project it separately)")
            }
        }
    }
}
