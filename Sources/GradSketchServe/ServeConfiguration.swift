/// What `gradsketch serve` serves and how (Spec/serve.md §1).
public struct ServeConfiguration: Sendable {
    /// The store directory.
    public var storePath: String
    /// The address to bind; loopback unless the caller chooses otherwise.
    public var host: String = "127.0.0.1"
    /// The TCP port; 0 lets the system choose one (the `listening on` line reports it).
    public var port: Int = 8080
    /// The version to serve; the latest when nil.
    public var version: Int? = nil
    /// Switch to the latest version when a newer one is committed.
    public var follow: Bool = false
    /// How often `follow` looks for a newer version.
    public var followInterval: Duration = .seconds(1)
    /// The largest request body accepted; larger bodies get 413.
    public var maxBodyBytes: Int = 64 << 20
    /// Threads that run queries and selections, off the event loops.
    public var queryThreads: Int = 2
    /// Largest `k` a query may ask for.
    public var maxK: Int = 10_000

    public init(storePath: String) {
        self.storePath = storePath
    }
}
