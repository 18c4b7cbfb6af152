import Foundation
import NIOCore
import OutpostConfig

/// What a loaded configuration must satisfy before a node starts or reloads with it, beyond
/// the file's own syntax: `outpost check-config`, `outpost serve` at start and SIGHUP run the
/// same checks, and each lists every problem it finds (docs/operations.md).
public enum ConfigurationCheck {
    public static func problems(in configuration: OutpostConfiguration) -> [String] {
        run(configuration).problems
    }

    /// The same checks for a node about to start or reload: every problem thrown at once, else
    /// the TLS certificates the checks loaded (nil without a TLS listener), so that the files
    /// are read once.
    static func verified(_ configuration: OutpostConfiguration) throws -> TLSCertificateSet? {
        let (problems, certificates) = run(configuration)
        guard problems.isEmpty else { throw ConfigurationError(problems: problems) }
        return certificates
    }

    private static func run(
        _ configuration: OutpostConfiguration
    ) -> (problems: [String], certificates: TLSCertificateSet?) {
        var problems: [String] = []
        var certificates: TLSCertificateSet?
        func record(_ check: () throws -> Void) {
            do {
                try check()
            } catch let error as ConfigurationError {
                problems += error.problems
            } catch {
                problems.append("\(error)")
            }
        }
        if configuration.upstream.defaultOrigin == nil && configuration.upstream.hosts.isEmpty {
            problems.append("no origin configured: set upstream.default or [upstream.hosts], or pass --origin")
        }
        record { try ConfigurationLoader.checkTLS(configuration.server) }
        if configuration.server.tlsListen != nil && !configuration.server.certificates.isEmpty {
            record {
                certificates = try TLSCertificateSet.load(
                    configuration.server.certificates, http2: configuration.http2.enabled)
            }
        }
        var listeners: [(String, SocketAddressSpec)] = [
            ("server.listen", configuration.server.listen), ("admin.listen", configuration.admin.listen),
        ]
        if let tls = configuration.server.tlsListen { listeners.append(("server.tls_listen", tls)) }
        for (label, address) in listeners {
            if let problem = addressProblem(address) { problems.append("\(label) \(address): \(problem)") }
        }
        for (index, (label, address)) in listeners.enumerated() where address.port != 0 {
            for (otherLabel, other) in listeners[(index + 1)...] where other.port == address.port {
                if other.host == address.host || ["0.0.0.0", "::"].contains(other.host)
                    || ["0.0.0.0", "::"].contains(address.host)
                {
                    problems.append("\(label) and \(otherLabel) both want port \(address.port)")
                }
            }
        }
        record { try AdminToken.checkExposure(configuration.admin) }
        if let caFile = configuration.upstream.tlsCAFile {
            record { _ = try UpstreamPool.tlsContext(caFile: caFile) }
        }
        if let problem = storeProblem(configuration.store.path) {
            problems.append("store.path \(configuration.store.path): \(problem)")
        }
        return (problems, certificates)
    }

    /// Why the listener could not bind this address (its host unknown, or not one of this
    /// machine's); nil when it could. The port itself is not taken: a running node holds it.
    static func addressProblem(_ address: SocketAddressSpec) -> String? {
        let resolved: SocketAddress
        do {
            resolved = try SocketAddress.makeAddressResolvingHost(address.host, port: 0)
        } catch {
            return "the host \(address.host) does not resolve"
        }
        let family: Int32 =
            switch resolved {
            case .v4: AF_INET
            case .v6: AF_INET6
            default: AF_UNIX
            }
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return "no socket can be made (errno \(errno))" }
        defer { close(descriptor) }
        let bound = resolved.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
        guard bound == 0 else {
            return errno == EADDRNOTAVAIL
                ? "\(address.host) is not an address of this machine" : String(cString: strerror(errno))
        }
        return nil
    }

    /// Why the store could not be opened here: not a directory, or not writable by this user
    /// (or, for a store not made yet, its nearest existing parent not writable).
    static func storeProblem(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { return "not a directory" }
            guard access(path, W_OK | X_OK) == 0 else { return "not writable by this user" }
            return nil
        }
        var parent = URL(fileURLWithPath: path).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: parent.path, isDirectory: &isDirectory) {
            guard parent.path != "/" else { return "no parent directory exists" }
            parent = parent.deletingLastPathComponent()
        }
        guard isDirectory.boolValue, access(parent.path, W_OK | X_OK) == 0 else {
            return "does not exist, and \(parent.path) is not a directory this user can create it in"
        }
        return nil
    }
}
