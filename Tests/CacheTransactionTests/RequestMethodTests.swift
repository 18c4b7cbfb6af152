import Testing

@testable import CacheTransaction

/// The method decided once from the token (RFC 9110 §9.1: case-sensitive), and sent on as it came.
@Suite("CacheTransaction: request methods")
struct RequestMethodTests {
    @Test(
        "tokens to methods and back",
        arguments: [
            ("GET", RequestMethod.get, true), ("HEAD", .head, true), ("POST", .post, false), ("PUT", .put, false),
            ("DELETE", .delete, false), ("PATCH", .patch, false), ("OPTIONS", .options, false),
            // Case-sensitive: "get" is another method, forwarded as sent, never answered from storage.
            ("get", .other("get"), false), ("PURGE", .other("PURGE"), false), ("M-SEARCH", .other("M-SEARCH"), false),
        ] as [(String, RequestMethod, Bool)])
    func tokens(token: String, method: RequestMethod, cacheable: Bool) {
        #expect(RequestMethod(token: token) == method)
        #expect(method.token == token)
        #expect(method.isGetOrHead == cacheable)
    }
}
