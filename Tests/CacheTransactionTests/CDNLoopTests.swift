import HTTPCaching
import Testing

@testable import CacheTransaction

/// RFC 8586 for a fleet: which CDN-Loop fields mean a request came round to this node again.
@Suite("CacheTransaction: CDN-Loop")
struct CDNLoopTests {
    static let loop = CDNLoop(fleet: "example-cdn", node: "0a1b2c3d")

    @Test(
        "a loop is this node's own member; the fleet's name alone, other nodes and other CDNs are not",
        arguments: [
            ([String](), false),
            (["other-cdn"], false),
            (["other-cdn; node=0a1b2c3d"], false),
            (["example-cdn"], false),
            (["example-cdn; foo=bar"], false),
            (["example-cdn; node=ffffffff"], false),
            (["example-cdn; node=ffffffff, example-cdn; node=eeeeeeee"], false),
            (["example-cdn; node=0a1b2c3d"], true),
            (["other-cdn, Example-CDN ;  NODE=0a1b2c3d"], true),
            (["example-cdn; node=ffffffff", "example-cdn; node=0a1b2c3d"], true),
            (["example-cdn; node=\"0a1b2c3d\""], true),
            (["example-cdn; note=\"a;node=0a1b2c3d\""], false),
            (["example-cdn; x=1; node=0a1b2c3d"], true),
        ])
    func detects(lines: [String], loops: Bool) {
        #expect(Self.loop.detects(in: HeaderFields(lines.map { ("CDN-Loop", $0) })) == loops)
    }

    @Test("the member this node adds; what it sends is a loop for itself only")
    func member() {
        #expect(Self.loop.member == "example-cdn; node=0a1b2c3d")
        let node = CDNLoop.newNode()
        #expect(node.count == 8 && node.allSatisfy(\.isHexDigit))
        let parent = CDNLoop(fleet: "example-cdn", node: "99999999")
        let sent = HeaderFields([("CDN-Loop", Self.loop.member)])
        #expect(!parent.detects(in: sent) && Self.loop.detects(in: sent))
    }
}
