import ArgumentParser
import EdgeProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import OutpostConfig
import ServiceLifecycle
import UnixSignals

/// `outpost serve`: runs the edge node until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Outpost in front of an origin.",
        discussion: "Flags override the configuration file; see docs/configuration.md for every key.")

    @Option(help: "Configuration file (TOML).")
    var config: String?

    @Option(help: "Traffic listener, HOST:PORT (server.listen).")
    var listen: String?

    @Option(name: .customLong("tls-listen"), help: "TLS listener, HOST:PORT (server.tls_listen).")
    var tlsListen: String?

    @Option(help: "Default origin, e.g. http://127.0.0.1:8081 (upstream.default).")
    var origin: String?

    @Option(help: "Store directory (store.path).")
    var store: String?

    @Option(name: .customLong("max-store-size"), help: "Store size bound, e.g. 2GiB (store.max_store_size).")
    var maxStoreSize: String?

    @Option(name: .customLong("admin-listen"), help: "Admin listener, HOST:PORT (admin.listen).")
    var adminListen: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (log.level).")
    var logLevel: String?

    /// The configuration file, then the flags over it, then the admin token: at start and on
    /// every SIGHUP.
    private func loadConfiguration() throws -> OutpostConfiguration {
        var configuration = try config.map(ConfigurationLoader.load(path:)) ?? OutpostConfiguration()
        try applyFlags(to: &configuration)
        try AdminToken.resolve(&configuration, environment: ProcessInfo.processInfo.environment)
        return configuration
    }

    func run() async throws {
        let configuration: OutpostConfiguration
        do {
            configuration = try loadConfiguration()
        } catch let error as ConfigurationError {
            throw ValidationError(error.message)
        }
        let level = Logger.Level(rawValue: configuration.log.level) ?? .info
        let format = configuration.log.format
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "outpost")
        let server: OutpostServer
        do {
            server = try await OutpostServer(configuration: configuration, logger: logger)
        } catch let error as ConfigurationError {
            throw ValidationError(error.message)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        // Under a file-size limit (ulimit -f, LimitFSIZE) a store write past it must fail with
        // EFBIG, which the store handles as a full disk, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        // The process is a service group (swift-service-lifecycle): SIGTERM / SIGINT start a
        // graceful shutdown of the node, and `run` returns once it is complete; SIGHUP reloads.
        // The group traps the signals before any service starts, and the node prints its
        // "listening" line only then.
        let command = self
        // SIGHUP is trapped here, before the node says it is listening.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: EdgeNodeService(server: server)),
                    .init(
                        service: ReloadService(server: server, hangups: hangups, logger: logger) {
                            try command.loadConfiguration()
                        },
                        successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    private func applyFlags(to configuration: inout OutpostConfiguration) throws {
        if let listen {
            guard let address = SocketAddressSpec(parsing: listen) else {
                throw ValidationError("--listen: \"\(listen)\" is not HOST:PORT")
            }
            configuration.server.listen = address
        }
        if let tlsListen {
            guard let address = SocketAddressSpec(parsing: tlsListen) else {
                throw ValidationError("--tls-listen: \"\(tlsListen)\" is not HOST:PORT")
            }
            configuration.server.tlsListen = address
        }
        if let adminListen {
            guard let address = SocketAddressSpec(parsing: adminListen) else {
                throw ValidationError("--admin-listen: \"\(adminListen)\" is not HOST:PORT")
            }
            configuration.admin.listen = address
        }
        if let origin {
            guard let url = OriginURL(parsing: origin) else {
                throw ValidationError("--origin: \"\(origin)\" is not an http:// or https:// URL")
            }
            configuration.upstream.defaultOrigin = url
        }
        if let store { configuration.store.path = store }
        if let maxStoreSize {
            guard let bytes = ByteSize.parse(maxStoreSize), bytes >= 1 << 20 else {
                throw ValidationError("--max-store-size: \"\(maxStoreSize)\" is not a size of at least 1MiB")
            }
            configuration.store.maxStoreSize = bytes
        }
        if let logLevel {
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("--log-level: unknown level \"\(logLevel)\"")
            }
            configuration.log.level = logLevel
        }
    }
}
