import GradSketch
public import Logging
import Hummingbird
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// An HTTP server answering top-k queries and selections over one snapshot of a store as
/// JSON (Spec/serve.md).
public struct GradSketchServer: Sendable {
    public let configuration: ServeConfiguration
    /// The snapshot requests read; with `follow`, replaced when a newer version is committed.
    public let source: SnapshotSource
    let logger: Logger

    /// Opens the store and the snapshot to serve.
    ///
    /// - Throws: the engine's `StoreError` if the store or version cannot be opened.
    public init(configuration: ServeConfiguration, logger: Logger = Logger(label: "gradsketch-serve")) throws {
        self.configuration = configuration
        self.logger = logger
        source = try SnapshotSource(storePath: configuration.storePath, version: configuration.version)
    }

    /// Serves until SIGINT or SIGTERM (when `handleSignals`) or until the calling task is
    /// cancelled, then finishes the requests in flight.
    ///
    /// - Parameter onListening: called once the socket is bound, with the host, the bound
    ///   port (the one chosen when the configuration asks for port 0) and the version served.
    public func run(handleSignals: Bool = true,
                    onListening: @escaping @Sendable (_ host: String, _ port: Int, _ version: Int) async -> Void) async throws {
        let pool = NIOThreadPool(numberOfThreads: max(1, configuration.queryThreads))
        pool.start()
        let routes = ServeRoutes(source: source, pool: pool, configuration: configuration, logger: logger)
        var services: [any Service] = []
        if configuration.follow {
            services.append(SnapshotFollower(source: source, interval: configuration.followInterval, logger: logger))
        }
        let source = self.source
        let configuration = self.configuration
        let application = Application(
            router: routes.router(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "gradsketch-serve"),
            services: services,
            onServerRunning: { channel in
                await onListening(configuration.host, channel.localAddress?.port ?? configuration.port, source.snapshot.version)
            },
            logger: logger
        )
        do {
            try await application.runService(gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [])
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
    }
}
