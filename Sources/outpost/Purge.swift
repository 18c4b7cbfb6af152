import ArgumentParser
import AsyncHTTPClient
import EdgeProxy
import Foundation
import NIOCore
import NIOPosix
import OutpostConfig

/// `outpost purge`: the admin API's POST /purge from the shell.
struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Purge by URL, prefix or tag through a running Outpost's admin API.",
        discussion: "The bearer token is read from \(AdminToken.environmentVariable).")

    @Option(help: "Purge this URL (every variant and coding), as clients reach it.")
    var url: String?

    @Option(help: "Purge every URL starting with this.")
    var prefix: String?

    @Option(help: "Purge every object carrying this Surrogate-Key / Cache-Tag (repeatable).")
    var tag: [String] = []

    @Flag(help: "Mark stale (revalidated before reuse) instead of removing.")
    var soft = false

    @Option(help: "The admin listener.")
    var admin = "http://127.0.0.1:8090"

    func validate() throws {
        let given = [url != nil, prefix != nil, !tag.isEmpty].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give exactly one of --url, --prefix or --tag") }
    }

    func run() async throws {
        var body: [String: Any] = ["soft": soft]
        if let url { body["url"] = url }
        if let prefix { body["prefix"] = prefix }
        if !tag.isEmpty { body["tags"] = tag }
        let payload = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        var request = HTTPClientRequest(url: admin.hasSuffix("/") ? admin + "purge" : admin + "/purge")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token = ProcessInfo.processInfo.environment[AdminToken.environmentVariable], !token.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        request.body = .bytes(ByteBuffer(bytes: payload))
        let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
        let status: UInt
        let text: String
        do {
            let response = try await client.execute(request, timeout: .seconds(60))
            status = response.status.code
            text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            FileHandle.standardError.write(
                Data("outpost purge: cannot reach the admin API at \(admin): \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard status == 200 else {
            let reason =
                (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["error"] as? String
                ?? text
            FileHandle.standardError.write(Data("outpost purge: \(status): \(reason)\n".utf8))
            throw ExitCode(1)
        }
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    }
}
