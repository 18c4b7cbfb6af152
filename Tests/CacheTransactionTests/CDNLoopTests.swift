import HTTPCaching
import Testing

@testable import CacheTransaction

/// RFC 8586 for a fleet: which CDN-Loop fields mean a request came round to this node again.
@Suite("CacheTransaction: CDN-Loop")
struct CDNLoopTests {
    static let loop = CDNLoop(fleet: "example-cdn", node: "0a1b2c3d")

    @Test(
        "loops are this node's own member, or the fleet's name without a node",
        arguments: [
            ([String](), false),
            (["other-cdn"], false),
            (["other-cdn; node=0a1b2c3d"], false),
            (["example-cdn; node=ffffffff"], false),
            (["example-cdn; node=ffffffff, example-cdn; node=eeeeeeee"], false),
            (["example-cdn; node=0a1b2c3d"], true),
            (["other-cdn, Example-CDN ;  node=0a1b2c3d"], true),
            (["example-cdn; node=ffffffff", "example-cdn; node=0a1b2c3d"], true),
            (["example-cdn"], true),
            (["example-cdn; foo=bar"], true),
        ])
    func detects(lines: [String], loops: Bool) {
        #expect(Self.loop.detects(in: HeaderFields(lines.map { ("CDN-Loop", $0) })) == loops)
    }

    @Test("the members this node adds: inside the fleet with its node, leaving it without")
    func members() {
        #expect(Self.loop.insideMember == "example-cdn; node=0a1b2c3d")
        #expect(Self.loop.leavingMember == "example-cdn")
        let node = CDNLoop.newNode()
        #expect(node.count == 8 && node.allSatisfy(\.isHexDigit))
        // What this node sends its parent is not a loop for the parent, and is for itself.
        let parent = CDNLoop(fleet: "example-cdn", node: "99999999")
        let sent = HeaderFields([("CDN-Loop", Self.loop.insideMember)])
        #expect(!parent.detects(in: sent) && Self.loop.detects(in: sent))
    }
}
