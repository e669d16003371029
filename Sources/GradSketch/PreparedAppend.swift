import GradSketchStore

/// The token of a prepared append session (``AppendSession/prepare()``): JSON text naming the
/// segments the session wrote, to be committed with the tokens of other sessions (from any
/// process) as one version by ``Store/commit(prepared:detail:)``.
///
/// A token is an API artifact, not a stored file. The commit trusts nothing in it: each
/// segment it names is checked against the file (Spec/c-api.md §12).
public struct PreparedAppend: Codable, Sendable, Equatable {
    /// The JSON text; pass it between processes as is.
    public var token: String

    public init(token: String) {
        self.token = token
    }
}

extension Store {
    /// Commits the rows of prepared append sessions as ONE new version: all or nothing.
    ///
    /// Every token is checked against the files it names (a segment of this store's
    /// `segments/` directory with the recorded size, checksums, row count and ids; rows finite
    /// unless recorded otherwise), then the appends apply in token order with every rule a
    /// single session's commit meets: ids unique across all tokens and the set, one
    /// projection and checkpoint per set, equal k and dtype. A token whose segments a
    /// version already holds is refused.
    ///
    /// - Throws: `.invalidInput` for a malformed, foreign or already committed token or a
    ///   broken rule, `.corrupt` when a file does not match its token, `.conflict` when a
    ///   concurrent commit made the change impossible. Nothing is committed then, and no
    ///   file is removed (the sessions own them).
    @discardableResult
    public func commit(prepared: [PreparedAppend], detail: String? = nil) throws -> CommitResult {
        let tokens = try prepared.enumerated().map { try PreparedAppendToken.parse($1.token, index: $0) }
        return CommitResult(try engine.commitPrepared(tokens, detail: detail))
    }
}
