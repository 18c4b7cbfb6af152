import Foundation
import HTTPCaching
import NIOCore
import NIOPosix
import NIOSSL
import OutpostTestSupport
import Testing

@testable import EdgeProxy
@testable import OutpostConfig

/// The TLS listener (docs/tls.md): certificates by SNI with a default, TLS 1.2 and 1.3 only,
/// ALPN, reload on SIGHUP without dropping connections, clear errors at start.
@Suite("EdgeProxy: TLS termination")
struct TLSListenerTests {
    /// The certificates written to files, as `[[server.certificates]]` names them.
    final class CertificateFilesOnDisk {
        let directory = NSTemporaryDirectory() + "outpost-tls-" + UUID().uuidString

        init() throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }

        /// Writes `pair` as NAME.pem and NAME.key.
        @discardableResult
        func write(_ name: String, _ pair: (cert: String, key: String)) throws -> CertificateFiles {
            let files = CertificateFiles(cert: "\(directory)/\(name).pem", key: "\(directory)/\(name).key")
            try pair.cert.write(toFile: files.cert, atomically: true, encoding: .utf8)
            try pair.key.write(toFile: files.key, atomically: true, encoding: .utf8)
            return files
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    static func clientContext(
        protocols: [String] = ["http/1.1"], verifyHost: Bool = true, minimum: TLSVersion = .tlsv1,
        maximum: TLSVersion? = nil
    ) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(EdgeCertificates.caPEM.utf8)))
        configuration.applicationProtocols = protocols
        configuration.certificateVerification = verifyHost ? .fullVerification : .noHostnameVerification
        configuration.minimumTLSVersion = minimum
        configuration.maximumTLSVersion = maximum
        return try NIOSSLContext(configuration: configuration)
    }

    static func serial(_ pem: String) throws -> [UInt8] {
        try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))[0].serialNumber
    }

    /// An Outpost with a TLS listener serving `siteA` (the default) and `siteB`.
    static func withTLSOutpost(
        _ body: (TestOrigin, TestOutpost, CertificateFilesOnDisk, Int) async throws -> Void
    ) async throws {
        let files = try CertificateFilesOnDisk()
        let siteA = try files.write("a", EdgeCertificates.siteA)
        let siteB = try files.write("b", EdgeCertificates.siteB)
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=600"), ("Vary", "Accept-Encoding")]),
            configure: {
                $0.server.tlsListen = SocketAddressSpec(host: "127.0.0.1", port: 0)
                $0.server.certificates = [siteA, siteB]
            }
        ) { origin, outpost, _ in
            try await body(origin, outpost, files, try #require(outpost.server.tlsAddress?.port))
        }
    }

    @Test(
        "names come from the certificate's DNS names unless hosts is given; SNI picks exact, then wildcard, else the first"
    )
    func sniSelection() throws {
        let files = try CertificateFilesOnDisk()
        let siteA = try files.write("a", EdgeCertificates.siteA)
        var siteB = try files.write("b", EdgeCertificates.siteB)
        let set = try TLSCertificateSet.load([siteA, siteB])
        #expect(set.entries.map(\.names) == [["a.test", "*.a.test"], ["b.test"]])
        let cases: [(String?, String)] = [
            ("a.test", siteA.cert), ("b.test", siteB.cert), ("B.Test", siteB.cert), ("www.a.test", siteA.cert),
            ("x.www.a.test", siteA.cert), ("c.test", siteA.cert), (nil, siteA.cert), ("", siteA.cert),
        ]
        for (name, expected) in cases {
            #expect(TLSCertificateSet.entry(for: name, in: set.entries).source == expected, "\(name ?? "nil")")
        }
        siteB.hosts = ["shop.example", "*.shop.example"]
        let named = try TLSCertificateSet.load([siteA, siteB])
        #expect(TLSCertificateSet.entry(for: "eu.shop.example", in: named.entries).source == siteB.cert)
        #expect(TLSCertificateSet.entry(for: "b.test", in: named.entries).source == siteA.cert)
    }

    @Test("an expired, missing, unreadable, non-PEM or mismatched pair is refused with every problem named")
    func refusedCertificates() throws {
        let files = try CertificateFilesOnDisk()
        let expired = try files.write("old", EdgeCertificates.expired)
        let siteA = try files.write("a", EdgeCertificates.siteA)
        let siteB = try files.write("b", EdgeCertificates.siteB)
        let mismatched = CertificateFiles(cert: siteA.cert, key: siteB.key)
        let missing = CertificateFiles(cert: files.directory + "/none.pem", key: siteA.key)
        let garbage = files.directory + "/garbage.pem"
        try "not a certificate".write(toFile: garbage, atomically: true, encoding: .utf8)
        let notPEM = CertificateFiles(cert: garbage, key: siteA.key)
        let problems: String
        do {
            _ = try TLSCertificateSet.load([siteA, expired, mismatched, missing, notPEM])
            Issue.record("loaded")
            return
        } catch let error as ConfigurationError {
            problems = error.message
        }
        let lines = problems.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(problems)")
        #expect(
            lines[0].hasPrefix("server.certificates[1].cert \(expired.cert): the certificate expired on 2021-01-01"))
        #expect(lines[1].hasPrefix("server.certificates[2]: the key \(siteB.key) does not match the certificate"))
        #expect(lines[2] == "server.certificates[3].cert \(missing.cert): no such file")
        #expect(lines[3].hasPrefix("server.certificates[4].cert \(garbage): not a PEM certificate chain"))
        // As root every file is readable; otherwise a file without read permission says so.
        if geteuid() != 0 {
            chmod(siteA.key, 0)
            #expect(throws: ConfigurationError.self) { try TLSCertificateSet.load([siteA]) }
        }
    }

    @Test("a server with an expired certificate does not start, and says why")
    func expiredAtStart() async throws {
        let files = try CertificateFilesOnDisk()
        let expired = try files.write("old", EdgeCertificates.expired)
        let origin = try await TestOrigin.start(staticOrigin([]))
        do {
            let outpost = try await TestOutpost.start(origin: origin.url) {
                $0.server.tlsListen = SocketAddressSpec(host: "127.0.0.1", port: 0)
                $0.server.certificates = [expired]
            }
            Issue.record("started")
            await outpost.stop()
            outpost.removeStore()
        } catch let error as ConfigurationError {
            #expect(error.message.contains("the certificate expired on 2021-01-01"), "\(error.message)")
        }
        await origin.stop()
    }

    @Test("over TLS 1.3 and 1.2: ALPN http/1.1, a miss then a hit with Age, SNI choosing the certificate")
    func missThenHit() async throws {
        try await Self.withTLSOutpost { origin, outpost, _, port in
            let first = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
            #expect(first.negotiatedProtocol == "http/1.1")
            #expect(try await first.tlsVersion() == .tlsv13)
            #expect(try await first.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteA.cert))
            let miss = try await first.get("/tls", host: "a.test")
            #expect(miss.head.hasPrefix("HTTP/1.1 200") && miss.body == "body of /tls", "\(miss.head)")
            #expect(miss.head.lowercased().contains("cache-status: outpost; fwd=uri-miss"), "\(miss.head)")
            // The next request waits for the commit (it may land after the answer).
            #expect(
                try await eventually {
                    if case .found = try outpost.server.store.lookup(
                        "http://a.test/tls", requestHeaders: HeaderFields())
                    {
                        return true
                    }
                    return false
                })
            let hit = try await first.get("/tls", host: "a.test")
            #expect(hit.head.lowercased().contains("cache-status: outpost; hit"), "\(hit.head)")
            #expect(hit.head.lowercased().contains("\r\nage: "), "\(hit.head)")
            await first.close()
            #expect(origin.count("/tls") == 1)

            let twelve = try await KeepAliveConnection(
                port: port, tls: Self.clientContext(maximum: .tlsv12), serverName: "b.test")
            #expect(try await twelve.tlsVersion() == .tlsv12)
            #expect(try await twelve.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteB.cert))
            #expect(try await twelve.get("/tls", host: "a.test").head.lowercased().contains("hit"))
            await twelve.close()

            // An unknown name gets the default certificate.
            let unknown = try await KeepAliveConnection(
                port: port, tls: Self.clientContext(verifyHost: false), serverName: "c.test")
            #expect(try await unknown.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteA.cert))
            await unknown.close()
        }
    }

    @Test("TLS 1.1 and older are refused")
    func oldVersionsRefused() async throws {
        try await Self.withTLSOutpost { _, _, _, port in
            await #expect(throws: (any Error).self) {
                let old = try await KeepAliveConnection(
                    port: port, tls: Self.clientContext(maximum: .tlsv11), serverName: "a.test")
                await old.close()
            }
        }
    }

    @Test("a reload serves a renewed certificate to new connections while an open one goes on; a bad one is refused")
    func reloadKeepsConnections() async throws {
        try await Self.withTLSOutpost { _, outpost, files, port in
            let old = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
            #expect(try await old.get("/r", host: "a.test").body == "body of /r")
            // Renewed in place, as certbot does, then SIGHUP (reload).
            try files.write("a", EdgeCertificates.siteARenewed)
            let notes = try outpost.server.reload(outpost.server.configuration)
            #expect(notes.contains("certificates reloaded"))
            let renewed = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
            #expect(
                try await renewed.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteARenewed.cert))
            #expect(try await renewed.get("/r", host: "a.test").body == "body of /r")
            await renewed.close()
            // The connection opened before the reload still works, with its certificate.
            #expect(try await old.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteA.cert))
            #expect(try await old.get("/r", host: "a.test").body == "body of /r")
            await old.close()

            // An expired replacement is refused and the renewed set stays.
            try files.write("a", EdgeCertificates.expired)
            #expect(throws: ConfigurationError.self) { try outpost.server.reload(outpost.server.configuration) }
            let after = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
            #expect(try await after.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteARenewed.cert))
            await after.close()
        }
    }

    @Test("a TLS 1.2 session is resumed (openssl s_client -sess_out, then -sess_in)")
    func sessionResumption() async throws {
        try await Self.withTLSOutpost { _, _, files, port in
            let ca = files.directory + "/ca.pem"
            try EdgeCertificates.caPEM.write(toFile: ca, atomically: true, encoding: .utf8)
            let session = files.directory + "/session"
            let common = [
                "s_client", "-connect", "127.0.0.1:\(port)", "-servername", "a.test", "-CAfile", ca, "-tls1_2",
            ]
            let first = try await ChildProcess.runDetached(
                "/usr/bin/openssl", common + ["-sess_out", session], input: [])
            #expect(first.status == 0, "\(String(decoding: first.stderr, as: UTF8.self))")
            let again = try await ChildProcess.runDetached(
                "/usr/bin/openssl", common + ["-sess_in", session], input: [])
            let text = String(decoding: again.stdout, as: UTF8.self)
            #expect(text.contains("Reused, TLSv1.2"), "\(text)")
        }
    }

    @Test(
        "outpost serve: kill -HUP after a renewal serves the new certificate to new connections; an open one finishes")
    func sighupRenewal() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=600")]))
        let files = try CertificateFilesOnDisk()
        let site = try files.write("a", EdgeCertificates.siteA)
        let config = files.directory + "/outpost.toml"
        try writeNodeConfig(
            config, origin: origin.url, store: files.directory + "/store", server: ["tls_listen = \"127.0.0.1:0\""],
            tables: certificateTable(site))
        let node = try await OutpostProcess.start(arguments: ["serve", "--config", config])
        let port = try #require(node.tlsPort)
        let old = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
        #expect(try await old.get("/before", host: "a.test").body == "body of /before")
        try files.write("a", EdgeCertificates.siteARenewed)
        node.signal(SIGHUP)
        let renewed = try Self.serial(EdgeCertificates.siteARenewed.cert)
        #expect(
            try await eventually {
                let fresh = try await KeepAliveConnection(port: port, tls: Self.clientContext(), serverName: "a.test")
                let serial = try await fresh.peerCertificate()?.serialNumber
                await fresh.close()
                return serial == renewed
            })
        // The connection opened before the reload goes on, with the certificate it had.
        #expect(try await old.get("/after", host: "a.test").body == "body of /after")
        #expect(try await old.peerCertificate()?.serialNumber == Self.serial(EdgeCertificates.siteA.cert))
        await old.close()
        await node.stop()
        await origin.stop()
    }
}
