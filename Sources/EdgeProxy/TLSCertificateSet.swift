import Foundation
import NIOCore
import NIOSSL
import OutpostConfig

/// The TLS listener's certificates, loaded from `[[server.certificates]]` and checked, and the
/// server context that picks one by SNI (docs/tls.md). Built at start and on every SIGHUP; a
/// connection keeps the set it was accepted with, so a reload never drops one.
public struct TLSCertificateSet: Sendable {
    /// One certificate: its chain (leaf first), its key, and the names it answers.
    struct Entry: Sendable {
        let names: [String]
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let source: String
    }

    let entries: [Entry]
    /// TLS 1.2 and 1.3, the default certificate, SNI choosing the others, ALPN.
    public let context: NIOSSLContext

    /// What ALPN offers, in order of preference: `h2` first unless `http2.enabled` is off.
    static func applicationProtocols(http2: Bool) -> [String] { http2 ? ["h2", "http/1.1"] : ["http/1.1"] }

    /// Loads and checks every entry. Each problem (a file missing or unreadable, not PEM, a
    /// certificate expired or not yet valid, a key that is not the certificate's) is listed in
    /// the one error, named by entry and file.
    public static func load(
        _ files: [CertificateFiles], http2: Bool = true, now: Date = Date()
    ) throws -> TLSCertificateSet {
        var problems: [String] = []
        var entries: [Entry] = []
        for (index, file) in files.enumerated() {
            do {
                entries.append(try loadEntry(file, label: "server.certificates[\(index)]", now: now))
            } catch let error as ConfigurationError {
                problems.append(error.message)
            }
        }
        guard problems.isEmpty else { throw ConfigurationError(problems: problems) }
        guard let first = entries.first else {
            throw ConfigurationError("server.tls_listen needs at least one [[server.certificates]] entry")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: first.chain.map { .certificate($0) }, privateKey: .privateKey(first.key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        // Forward-secret AEAD suites only for TLS 1.2 (TLS 1.3's are all of that kind).
        configuration.cipherSuites = Self.cipherSuites
        configuration.applicationProtocols = Self.applicationProtocols(http2: http2)
        let chosen = entries
        if chosen.count > 1 {
            configuration.sslContextCallback = { values, promise in
                let entry = Self.entry(for: values.serverHostname, in: chosen)
                guard entry.source != chosen[0].source else { return promise.succeed(.noChanges) }
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = entry.chain.map { .certificate($0) }
                override.privateKey = .privateKey(entry.key)
                promise.succeed(override)
            }
        }
        do {
            return TLSCertificateSet(entries: entries, context: try NIOSSLContext(configuration: configuration))
        } catch {
            throw ConfigurationError("server.certificates: the TLS context cannot be made: \(error)")
        }
    }

    static let cipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// The entry for an SNI name: an exact name first, then a wildcard for its parent
    /// (`*.example.com` covers `a.example.com`, not `a.b.example.com`), else the first entry.
    static func entry(for serverName: String?, in entries: [Entry]) -> Entry {
        guard let name = serverName?.lowercased(), !name.isEmpty else { return entries[0] }
        if let exact = entries.first(where: { $0.names.contains(name) }) { return exact }
        if let dot = name.firstIndex(of: "."),
            let wild = entries.first(where: { $0.names.contains("*" + name[dot...]) })
        {
            return wild
        }
        return entries[0]
    }

    private static func loadEntry(_ file: CertificateFiles, label: String, now: Date) throws -> Entry {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(try readFile(file.cert, label: "\(label).cert"))
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("\(label).cert \(file.cert): not a PEM certificate chain (\(error))")
        }
        guard let leaf = chain.first else {
            throw ConfigurationError("\(label).cert \(file.cert): holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: try readFile(file.key, label: "\(label).key"), format: .pem)
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("\(label).key \(file.key): not a PEM private key (\(error))")
        }
        let seconds = time_t(now.timeIntervalSince1970)
        if leaf.notValidAfter < seconds {
            throw ConfigurationError(
                "\(label).cert \(file.cert): the certificate expired on \(Self.date(leaf.notValidAfter))")
        }
        if leaf.notValidBefore > seconds {
            throw ConfigurationError(
                "\(label).cert \(file.cert): the certificate is not valid before \(Self.date(leaf.notValidBefore))")
        }
        // BoringSSL refuses a key that is not the leaf's when a context is made with both.
        do {
            _ = try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
        } catch {
            throw ConfigurationError(
                "\(label): the key \(file.key) does not match the certificate \(file.cert) (\(error))")
        }
        let names = file.hosts ?? dnsNames(of: leaf)
        guard !names.isEmpty else {
            throw ConfigurationError("\(label).cert \(file.cert): has no DNS names; list them in hosts")
        }
        return Entry(names: names, chain: chain, key: key, source: file.cert)
    }

    private static func readFile(_ path: String, label: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigurationError("\(label) \(path): no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("\(label) \(path): cannot be read (permissions?)")
        }
        return [UInt8](data)
    }

    private static func dnsNames(of certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            guard name.nameType == .dnsName else { return nil }
            return String(decoding: name.contents, as: UTF8.self).lowercased()
        }
    }

    private static func date(_ seconds: time_t) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
