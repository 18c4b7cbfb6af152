import EdgeProxy
import NIOSSL

@testable import OutpostConfig

/// Runs `body` against a scripted origin and a fresh Outpost in front of it, and tears both
/// down afterwards (store directory included).
func withOutpost(
    origin handler: @escaping TestOrigin.Handler,
    originTLS: NIOSSLContext? = nil,
    configure: (inout OutpostConfiguration) -> Void = { _ in },
    _ body: (TestOrigin, TestOutpost, TestClient) async throws -> Void
) async throws {
    let origin = try await TestOrigin.start(tls: originTLS, handler)
    let outpost = try await TestOutpost.start(origin: origin.url, configure: configure)
    let client = TestClient()
    do {
        try await body(origin, outpost, client)
    } catch {
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
        await origin.stop()
        throw error
    }
    await client.shutdown()
    await outpost.stop()
    outpost.removeStore()
    await origin.stop()
}

/// An origin answering every GET with these fields and a body naming the path.
func staticOrigin(_ headers: [(String, String)]) -> TestOrigin.Handler {
    { request in OriginResponse(headers: headers, body: "body of \(request.uri)") }
}
