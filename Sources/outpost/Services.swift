import EdgeProxy
import Foundation
import Logging
import OutpostConfig
import ServiceLifecycle
import UnixSignals

/// The edge node as a service of the process's group: it runs until a graceful shutdown
/// (SIGTERM, SIGINT), which stops accepting, lets requests in flight finish within
/// `server.shutdown_grace`, and closes the store.
struct EdgeNodeService: Service {
    let server: OutpostServer

    func run() async throws {
        let traffic = server.trafficAddress
        let admin = server.adminAddress
        let tls = server.tlsAddress.map { ", tls https://\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? ""
        print(
            "outpost listening on http://\(traffic.ipAddress ?? "?"):\(traffic.port ?? 0)"
                + " (admin http://\(admin.ipAddress ?? "?"):\(admin.port ?? 0)\(tls))")
        fflush(nil)
        await withGracefulShutdownHandler {
            await server.run()
        } onGracefulShutdown: {
            server.shutdown()
        }
    }
}

/// SIGHUP reloads the configuration file (and flags and token) without dropping connections,
/// after the checks of `outpost check-config`; a file that does not pass is reported, every
/// problem on the line, and the running configuration stays.
struct ReloadService: Service {
    let server: OutpostServer
    /// Trapped before the group starts (a SIGHUP's default action would end the process).
    let hangups: UnixSignalsSequence
    let logger: Logger
    let load: @Sendable () throws -> OutpostConfiguration

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            do {
                let notes = try server.reload(try load())
                logger.notice(
                    "SIGHUP: configuration reloaded", metadata: ["changes": "\(notes.joined(separator: "; "))"])
            } catch let error as ConfigurationError {
                logger.error(
                    "SIGHUP: reload failed, the running configuration stays", metadata: ["error": "\(error.message)"])
            } catch {
                logger.error("SIGHUP: reload failed, the running configuration stays", metadata: ["error": "\(error)"])
            }
        }
    }
}
