import ArgumentParser
import EdgeProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import OutpostConfig
import ServiceLifecycle
import UnixSignals

/// The configuration file and the flags over it, as `serve` and `check-config` take them.
struct ServeOptions: ParsableArguments {
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

    /// What the file, the flags and the admin token make: the configuration as far as it could
    /// be read (nil when the file is unreadable or not TOML), every problem found on the way,
    /// and where the admin token came from.
    func collect(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> (configuration: OutpostConfiguration?, problems: [String], tokenSource: String?) {
        var configuration = OutpostConfiguration()
        var problems: [String] = []
        if let config {
            do {
                (configuration, problems) = try ConfigurationLoader.loadCollecting(path: config)
            } catch let error as ConfigurationError {
                return (nil, error.problems, nil)
            } catch {
                return (nil, ["\(config): \(error)"], nil)
            }
        }
        problems += applyFlags(to: &configuration)
        var tokenSource: String?
        do {
            try AdminToken.resolve(&configuration, environment: environment)
            if environment[AdminToken.environmentVariable].map({ !$0.isEmpty }) == true {
                tokenSource = "from \(AdminToken.environmentVariable)"
            } else if let file = configuration.admin.tokenFile {
                tokenSource = "from \(file)"
            }
        } catch let error as ConfigurationError {
            problems += error.problems
        } catch {
            problems.append("\(error)")
        }
        return (configuration, problems, tokenSource)
    }

    /// The configuration to serve with, at start and on every SIGHUP; throws every problem of
    /// the file and flags at once. The node runs the other checks of `check-config` itself when
    /// it starts or reloads with it (`ConfigurationCheck`), reading the certificates once.
    func loadConfiguration() throws -> OutpostConfiguration {
        let collected = collect()
        guard let configuration = collected.configuration, collected.problems.isEmpty else {
            throw ConfigurationError(problems: collected.problems)
        }
        return configuration
    }

    /// Applies the flags over the file's values; a problem per flag that is not valid.
    private func applyFlags(to configuration: inout OutpostConfiguration) -> [String] {
        var problems: [String] = []
        func address(_ flag: String, _ text: String?, _ apply: (SocketAddressSpec) -> Void) {
            guard let text else { return }
            guard let parsed = SocketAddressSpec(parsing: text) else {
                problems.append("--\(flag): \"\(text)\" is not HOST:PORT")
                return
            }
            apply(parsed)
        }
        address("listen", listen) { configuration.server.listen = $0 }
        address("tls-listen", tlsListen) { configuration.server.tlsListen = $0 }
        address("admin-listen", adminListen) { configuration.admin.listen = $0 }
        if let origin {
            if let url = OriginURL(parsing: origin) {
                configuration.upstream.defaultOrigin = url
            } else {
                problems.append("--origin: \"\(origin)\" is not an http:// or https:// URL")
            }
        }
        if let store { configuration.store.path = store }
        if let maxStoreSize {
            if let bytes = ByteSize.parse(maxStoreSize), bytes >= 1 << 20 {
                configuration.store.maxStoreSize = bytes
            } else {
                problems.append("--max-store-size: \"\(maxStoreSize)\" is not a size of at least 1MiB")
            }
        }
        if let logLevel {
            if Logger.Level(rawValue: logLevel) != nil {
                configuration.log.level = logLevel
            } else {
                problems.append("--log-level: unknown level \"\(logLevel)\"")
            }
        }
        return problems
    }
}

/// `outpost serve`: runs the edge node until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Outpost in front of an origin.",
        discussion: "Flags override the configuration file; see docs/configuration.md for every key.")

    @OptionGroup var options: ServeOptions

    func run() async throws {
        let configuration: OutpostConfiguration
        do {
            configuration = try options.loadConfiguration()
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
        let options = self.options
        // SIGHUP is trapped here, before the node says it is listening.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: EdgeNodeService(server: server)),
                    .init(
                        service: ReloadService(server: server, hangups: hangups, logger: logger) {
                            try options.loadConfiguration()
                        },
                        successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
