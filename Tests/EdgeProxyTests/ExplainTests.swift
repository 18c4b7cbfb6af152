import Foundation
import HTTPCaching
import OutpostTestSupport
import Testing

/// `outpost inspect explain` against the store of a running node: what it would do with a
/// request, and why (docs/operations.md).
@Suite("outpost inspect explain")
struct ExplainTests {
    static func origin() -> TestOrigin.Handler {
        { request in
            switch request.path {
            case "/fresh":
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("ETag", "\"f1\""), ("Content-Type", "text/plain")],
                    body: String(repeating: "fresh body ", count: 20))
            case "/swr":
                // Already 100 s old when it arrives: stale, within its stale-while-revalidate.
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=10, stale-while-revalidate=600"), ("Age", "100")],
                    body: "swr body")
            case "/sie":
                return OriginResponse(
                    headers: [
                        ("Cache-Control", "max-age=10, stale-if-error=600"), ("Age", "100"),
                        ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
                    ], body: "sie body")
            case "/vary":
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")],
                    body: "in \(request.headers["Accept-Language"] ?? "-")")
            default:
                return OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "other")
            }
        }
    }

    static func explain(_ store: String, _ url: String, _ arguments: [String] = []) async throws -> [String: Any] {
        let result = try await runOutpost(["inspect", "explain", url, "--store", store, "--json"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test("fresh, stale-while-revalidate, stale-if-error, a Vary mismatch and a never-seen URL, each with its reason")
    func cases() async throws {
        try await withOutpost(origin: Self.origin()) { _, outpost, client in
            for (path, headers) in [
                ("/fresh", []), ("/swr", []), ("/sie", []), ("/vary", [("Accept-Language", "en")]),
            ] as [(String, [(String, String)])] {
                #expect(try await client.get(outpost.base + path, headers).status == 200)
                #expect(try await outpost.stored(path, requestHeaders: headers))
            }
            let store = outpost.storePath
            let base = outpost.base

            let fresh = try await Self.explain(store, base + "/fresh")
            #expect(fresh["action"] as? String == "hit" && fresh["status"] as? Int == 200, "\(fresh)")
            let freshness = try #require(fresh["freshness"] as? [String: Any])
            #expect(freshness["source"] as? String == "max-age" && freshness["lifetime"] as? Int == 600)
            #expect((freshness["left"] as? Int).map { $0 > 500 && $0 <= 600 } == true, "\(freshness)")
            #expect(fresh["coding"] as? String == "identity" && fresh["selected_variant"] as? Int == 1)

            let ranged = try await Self.explain(store, base + "/fresh", ["-H", "Range: bytes=0-9"])
            #expect(ranged["status"] as? Int == 206 && ranged["range"] as? String == "bytes 0-9/220", "\(ranged)")
            let conditional = try await Self.explain(store, base + "/fresh", ["-H", "If-None-Match: \"f1\""])
            #expect(conditional["status"] as? Int == 304)
            let head = try await Self.explain(store, base + "/fresh", ["--method", "HEAD"])
            #expect(head["action"] as? String == "hit" && head["method"] as? String == "HEAD")
            let post = try await Self.explain(store, base + "/fresh", ["--method", "POST"])
            #expect(post["action"] as? String == "pass" && post["forward"] as? String == "method")
            let noCache = try await Self.explain(store, base + "/fresh", ["-H", "Cache-Control: no-cache"])
            #expect(noCache["action"] as? String == "revalidate" && noCache["forward"] as? String == "request")
            #expect(
                (noCache["revalidate_with"] as? [[String: Any]])?.first?["field"] as? String == "If-None-Match",
                "\(noCache)")

            let swr = try await Self.explain(store, base + "/swr")
            #expect(swr["action"] as? String == "stale-while-revalidate", "\(swr)")
            let swrWindow = try #require(swr["stale_while_revalidate"] as? [String: Any])
            #expect(swrWindow["applies"] as? Bool == true)
            #expect((swrWindow["seconds"] as? Int).map { $0 > 400 && $0 <= 510 } == true, "\(swrWindow)")
            #expect(((swr["freshness"] as? [String: Any])?["fresh"] as? Bool) == false)

            let sie = try await Self.explain(store, base + "/sie")
            #expect(sie["action"] as? String == "revalidate" && sie["forward"] as? String == "stale", "\(sie)")
            #expect(((sie["stale_if_error"] as? [String: Any])?["applies"] as? Bool) == true)
            #expect(
                (sie["revalidate_with"] as? [[String: Any]])?.first?["field"] as? String == "If-Modified-Since")
            #expect((sie["reasons"] as? [String])?.contains { $0.contains("stale-if-error") } == true)

            let matched = try await Self.explain(store, base + "/vary", ["-H", "Accept-Language: en"])
            #expect(matched["action"] as? String == "hit", "\(matched)")
            #expect(
                (matched["selected_by"] as? [[String: Any]])?.first?["field"] as? String == "accept-language")
            let mismatched = try await Self.explain(store, base + "/vary", ["-H", "Accept-Language: de"])
            #expect(mismatched["action"] as? String == "miss" && mismatched["forward"] as? String == "vary-miss")
            let mismatch = try #require((mismatched["vary_mismatches"] as? [[String: Any]])?.first)
            #expect(mismatch["field"] as? String == "accept-language")
            #expect(mismatch["stored"] as? String == "en" && mismatch["request"] as? String == "de", "\(mismatch)")

            let never = try await Self.explain(store, base + "/never-seen")
            #expect(never["action"] as? String == "miss" && never["forward"] as? String == "uri-miss", "\(never)")
            #expect(never["variants"] as? Int == 0)

            // The table says the same for a person.
            let table = try await runOutpost([
                "inspect", "explain", base + "/vary", "--store", store, "-H", "Accept-Language: de",
            ])
            #expect(table.status == 0)
            #expect(table.stdout.contains("miss (fwd=vary-miss)"), "\(table.stdout)")
            #expect(table.stdout.contains("accept-language: stored for \"en\", this request has \"de\""))
        }
    }
}
