import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OutpostTestSupport
import Testing

/// Runs an `outpost` command to completion (killed after `deadline`) and returns its exit
/// status and output. The waiting happens on a Dispatch thread, never on one of the
/// concurrency pool's few threads that the other tests run on.
func runOutpost(
    _ arguments: [String], environment: [String: String] = [:], deadline: TimeInterval = 60
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(
                with: Result { try runOutpostBlocking(arguments, environment: environment, deadline: deadline) })
        }
    }
}

private func runOutpostBlocking(
    _ arguments: [String], environment: [String: String], deadline: TimeInterval
) throws -> (status: Int32, stdout: String, stderr: String) {
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "OUTPOST_ADMIN_TOKEN")
    env.merge(environment) { $1 }
    let process = try ChildProcess(
        try outpostExecutable().path, arguments, environment: env, stdout: .pipe, stderr: .pipe)
    let watchdog = DispatchWorkItem { process.signal(SIGTERM) }
    DispatchQueue.global().asyncAfter(deadline: .now() + deadline, execute: watchdog)
    let (stdout, stderr) = process.readToEnd()
    let status = process.waitForExit()
    watchdog.cancel()
    return (status, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

@Suite("outpost command line: serve, inspect, purge, SIGHUP")
struct CommandLineTests {
    @Test("inspect list/show/stats read the store of a running server; outpost purge works; SIGHUP switches origin")
    func endToEnd() async throws {
        let origin = try await TestOrigin.start(taggedOrigin())
        let second = try await TestOrigin.start { request in
            OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "second origin \(request.path)")
        }
        let directory = NSTemporaryDirectory() + "outpost-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let store = directory + "/store"
        let config = directory + "/outpost.toml"
        try writeNodeConfig(config, origin: origin.url, store: store)
        let server = try await OutpostProcess.start(config: config, environment: ["OUTPOST_ADMIN_TOKEN": "cli-token"])
        let client = TestClient()
        defer {
            server.terminateWithoutWaiting()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let base = "http://127.0.0.1:\(server.port)"
        let admin = "http://127.0.0.1:\(server.adminPort)"
        for path in ["/p/1", "/p/2", "/news/a", "/docs/x"] { _ = try await client.get(base + path) }
        _ = try await client.get(base + "/p/1")

        // inspect, while the server runs.
        let list = try await runOutpost(["inspect", "list", "--store", store])
        #expect(list.status == 0, "\(list.stderr)")
        for path in ["/p/1", "/p/2", "/news/a", "/docs/x"] { #expect(list.stdout.contains(base + path)) }
        let tagged = try await runOutpost(["inspect", "list", "--store", store, "--tag", "catalog", "--json"])
        let taggedURLs = try #require(
            try JSONSerialization.jsonObject(with: Data(tagged.stdout.utf8)) as? [[String: Any]]
        ).compactMap { $0["url"] as? String }
        #expect(taggedURLs == [base + "/p/1", base + "/p/2"])
        let show = try await runOutpost(["inspect", "show", base + "/p/1", "--store", store, "--json"])
        #expect(show.status == 0, "\(show.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        let variants = try #require(report["variants"] as? [[String: Any]])
        #expect(variants.count == 1)
        #expect(variants.first?["status"] as? Int == 200)
        #expect(variants.first?["etag"] as? String == "\"v-/p/1\"")
        #expect(variants.first?["tags"] as? [String] == ["product-1", "catalog"])
        #expect(variants.first?["fresh"] as? Bool == true)
        #expect(variants.first?["freshness_lifetime"] as? Int == 600)
        #expect((variants.first?["codings"] as? [[String: Any]])?.first?["coding"] as? String == "identity")
        let table = try await runOutpost(["inspect", "show", base + "/p/1", "--store", store])
        #expect(table.stdout.contains("freshness") && table.stdout.contains("fresh for"))
        let missing = try await runOutpost(["inspect", "show", base + "/nothing", "--store", store])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("nothing is stored"))
        let stats = try await runOutpost(["inspect", "stats", "--store", store, "--json"])
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any])
        #expect(figures["entries"] as? Int == 4)
        #expect(figures["objects"] as? Int == 4)

        // outpost purge: without the token it fails with the reason; with it, the URL goes.
        let refused = try await runOutpost(["purge", "--url", base + "/p/1", "--admin", admin])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("401"))
        let purged = try await runOutpost(
            ["purge", "--url", base + "/p/1", "--admin", admin], environment: ["OUTPOST_ADMIN_TOKEN": "cli-token"])
        #expect(purged.status == 0, "\(purged.stderr)")
        #expect(purged.stdout.contains("\"purged\":1"))
        let byTag = try await runOutpost(
            ["purge", "--tag", "front", "--soft", "--admin", admin], environment: ["OUTPOST_ADMIN_TOKEN": "cli-token"])
        #expect(byTag.stdout.contains("\"purged\":1"))
        let unreachable = try await runOutpost(["purge", "--prefix", base + "/", "--admin", "http://127.0.0.1:1"])
        #expect(unreachable.status != 0)
        #expect(unreachable.stderr.contains("cannot reach"))
        let usage = try await runOutpost(["purge", "--url", base + "/a", "--tag", "x"])
        #expect(usage.status != 0)
        let requestsBefore = origin.count("/p/1")
        _ = try await client.get(base + "/p/1")
        #expect(origin.count("/p/1") == requestsBefore + 1)
        #expect(try await client.get(base + "/p/2").isHit)

        // SIGHUP: a new origin from the rewritten file, without dropping an open connection.
        let connection = try await KeepAliveConnection(port: server.port)
        let before = try await connection.get("/fresh-1", host: "127.0.0.1:\(server.port)")
        #expect(before.body == "body of /fresh-1")
        try writeNodeConfig(config, origin: second.url, store: store, tag: "reloaded")
        server.signal(SIGHUP)
        #expect(
            try await eventually {
                try await client.get(base + "/probe-\(UUID().uuidString)").text.hasPrefix("second origin")
            })
        let after = try await connection.get("/fresh-2", host: "127.0.0.1:\(server.port)")
        #expect(after.body == "second origin /fresh-2")
        // A file that does not load leaves the running configuration in force.
        try "this is not toml [".write(toFile: config, atomically: true, encoding: .utf8)
        server.signal(SIGHUP)
        let still = try await connection.get("/fresh-3", host: "127.0.0.1:\(server.port)")
        #expect(still.body == "second origin /fresh-3")
        await connection.close()
        await client.shutdown()
        await server.stop()
        #expect(server.process.waitForExit() == 0)
        await origin.stop()
        await second.stop()
    }

    @Test(
        "SIGTERM and SIGINT: the listener closes at once, the request in flight still gets its answer, the process exits 0",
        arguments: [SIGTERM, SIGINT])
    func gracefulSignals(signal: Int32) async throws {
        let release = Gate()
        // Only /slow waits: a probe for /other that reaches the listener before the signal
        // has closed it (a loaded machine may take a moment) is answered at once and the
        // probe tries again, instead of waiting on the gate past the client's deadline.
        let origin = try await TestOrigin.start { request in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "finished")
            if request.path == "/slow" { response.headGate = release }
            return response
        }
        let directory = NSTemporaryDirectory() + "outpost-signal-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await OutpostProcess.start(origin: origin.url, store: directory)
        defer { server.terminateWithoutWaiting() }
        let client = TestClient()
        do {
            let inFlight = Task { try await client.get("http://127.0.0.1:\(server.port)/slow") }
            #expect(try await eventually { origin.requests(to: "/slow").count == 1 })
            server.signal(signal)
            // Draining: new connections are refused while the request in flight waits for its origin.
            #expect(
                try await eventually {
                    do {
                        _ = try await client.get("http://127.0.0.1:\(server.port)/other")
                        return false
                    } catch {
                        return true
                    }
                })
            release.open()
            let response = try await inFlight.value
            #expect(response.status == 200 && response.text == "finished")
            #expect(await server.exitStatus() == 0)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        await origin.stop()
    }
}
