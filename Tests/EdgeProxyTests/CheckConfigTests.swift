import Foundation
import OutpostTestSupport
import Testing

@testable import OutpostConfig

/// `outpost check-config` (docs/operations.md): the file and flags as `serve` reads them,
/// every problem listed, the effective configuration printed with secrets masked; SIGHUP runs
/// the same checks.
@Suite("outpost check-config")
struct CheckConfigTests {
    @Test("a broken file: each problem listed, exit 1; the flags are checked too")
    func brokenFile() async throws {
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let expired = try files.write("old", EdgeCertificates.expired)
        let notADirectory = files.directory + "/plain-file"
        try "x".write(toFile: notADirectory, atomically: true, encoding: .utf8)
        let config = files.directory + "/outpost.toml"
        try """
        [server]
        listen = "192.0.2.1:8080"
        tls_listen = "127.0.0.1:0"
        max_headers = "many"
        [[server.certificates]]
        cert = "\(expired.cert)"
        key = "\(expired.key)"
        [[server.certificates]]
        cert = "\(files.directory)/missing.pem"
        key = "\(expired.key)"
        [store]
        path = "\(notADirectory)/store"
        [admin]
        listen = "0.0.0.0:0"
        [cache]
        colour = "blue"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await runOutpost(["check-config", "--config", config, "--log-level", "loud"])
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.first == "outpost: \(config): 9 problems:", "\(result.stderr)")
        let expected = [
            "server.max_headers must be a whole number of at least 1",
            "unknown configuration key: cache.colour",
            "--log-level: unknown level \"loud\"",
            "admin.listen 0.0.0.0:0 is not a loopback address and no admin token is configured",
            "no origin configured",
            "the certificate expired on 2021-01-01",
            "server.certificates[1].cert \(files.directory)/missing.pem: no such file",
            "server.listen 192.0.2.1:8080: 192.0.2.1 is not an address of this machine",
            "store.path \(notADirectory)/store: does not exist, and \(notADirectory) is not a directory",
        ]
        for text in expected {
            #expect(lines.contains { $0.hasPrefix("  - ") && $0.contains(text) }, "missing: \(text)\n\(result.stderr)")
        }
        // What could be read is still printed.
        #expect(result.stdout.contains("[server]\nlisten = \"192.0.2.1:8080\""), "\(result.stdout)")
    }

    @Test("a valid file: exit 0, the effective configuration with flags applied and secrets masked")
    func validFile() async throws {
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let site = try files.write("a", EdgeCertificates.siteA)
        let config = files.directory + "/outpost.toml"
        try """
        [server]
        tls_listen = "127.0.0.1:0"
        [[server.certificates]]
        cert = "\(site.cert)"
        key = "\(site.key)"
        [upstream]
        default = "http://127.0.0.1:9"
        [store]
        path = "\(files.directory)/store"
        [cluster]
        purge_journal = "postgres://outpost:hunter2@127.0.0.1:5432/journal"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await runOutpost(
            ["check-config", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"],
            environment: ["OUTPOST_ADMIN_TOKEN": "token-never-printed"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr == "outpost: \(config): the configuration is valid\n")
        #expect(!result.stdout.contains("hunter2") && !result.stdout.contains("token-never-printed"))
        #expect(result.stdout.contains("# admin token: set (from OUTPOST_ADMIN_TOKEN), not shown"))
        let effective = try ConfigurationLoader.parse(result.stdout)
        #expect(
            effective.server.listen.description == "127.0.0.1:0" && effective.admin.listen.description == "0.0.0.0:0")
        #expect(effective.server.certificates.first?.cert == site.cert)
        #expect(effective.cluster.purgeJournal?.password == "***")
    }

    @Test("SIGHUP with a file that fails a check keeps the running configuration, and says why")
    func reloadRunsTheChecks() async throws {
        let first = try await TestOrigin.start { request in
            OriginResponse(headers: [("Cache-Control", "no-store")], body: "first \(request.path)")
        }
        let second = try await TestOrigin.start { request in
            OriginResponse(headers: [("Cache-Control", "no-store")], body: "second \(request.path)")
        }
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let store = files.directory + "/store"
        let config = files.directory + "/outpost.toml"
        try writeNodeConfig(config, origin: first.url, store: store)
        let stderr = files.directory + "/stderr"
        let server = try await OutpostProcess.start(arguments: ["serve", "--config", config], stderrFile: stderr)
        let client = TestClient()
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try await client.get(base + "/a").text == "first /a")
        // The second origin, and a certificate that does not exist: the whole file is refused.
        try (try String(contentsOfFile: config, encoding: .utf8))
            .replacingOccurrences(of: first.url, with: second.url)
            .appending("\n[[server.certificates]]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        server.signal(SIGHUP)
        #expect(
            try await eventually {
                (try? String(contentsOfFile: stderr, encoding: .utf8))?.contains("reload failed") == true
            })
        #expect(try await client.get(base + "/b").text == "first /b")
        let log = try String(contentsOfFile: stderr, encoding: .utf8)
        #expect(log.contains("given without server.tls_listen"), "\(log)")
        await client.shutdown()
        await server.stop()
        await first.stop()
        await second.stop()
    }
}
