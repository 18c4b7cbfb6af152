import ArgumentParser
import Dispatch
import EdgeProxy
import Foundation
import Logging
import NIOCore
import NIOPosix

/// `outpost serve`: runs the edge node until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Outpost in front of an origin.",
        discussion: "Flags override the configuration file; see docs/configuration.md for every key.")

    @Option(help: "Configuration file (TOML).")
    var config: String?

    @Option(help: "Traffic listener, HOST:PORT (server.listen).")
    var listen: String?

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
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
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
        // SIGTERM / SIGINT start a graceful shutdown; `run` returns once it is complete.
        // Under a file-size limit (ulimit -f, LimitFSIZE) a store write past it must fail with
        // EFBIG, which the store handles as a full disk, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        var sources = [SIGTERM, SIGINT].map { number -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { server.shutdown() }
            source.resume()
            return source
        }
        // SIGHUP reloads the configuration file (and flags and token) without dropping
        // connections; a file that does not load is reported and the running one stays.
        signal(SIGHUP, SIG_IGN)
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "outpost.reload"))
        reload.setEventHandler {
            do {
                let notes = try server.reload(try loadConfiguration())
                logger.notice(
                    "SIGHUP: configuration reloaded", metadata: ["changes": "\(notes.joined(separator: "; "))"])
            } catch let error as ConfigurationError {
                logger.error(
                    "SIGHUP: reload failed, the running configuration stays", metadata: ["error": "\(error.message)"])
            } catch {
                logger.error("SIGHUP: reload failed, the running configuration stays", metadata: ["error": "\(error)"])
            }
        }
        reload.resume()
        sources.append(reload)
        print(
            "outpost listening on http://\(server.trafficAddress.ipAddress ?? "?"):\(server.trafficAddress.port ?? 0)"
                + " (admin http://\(server.adminAddress.ipAddress ?? "?"):\(server.adminAddress.port ?? 0))")
        fflush(nil)
        await server.run()
        sources.forEach { $0.cancel() }
    }

    private func applyFlags(to configuration: inout OutpostConfiguration) throws {
        if let listen {
            guard let address = SocketAddressSpec(parsing: listen) else {
                throw ValidationError("--listen: \"\(listen)\" is not HOST:PORT")
            }
            configuration.server.listen = address
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
