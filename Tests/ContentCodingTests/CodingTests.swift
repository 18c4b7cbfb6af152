import ContentCoding
import Foundation
import HTTPCaching
import NIOCore
import OutpostTestSupport
import Testing

func text(_ count: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    var line = 0
    while bytes.count < count {
        bytes += Array("<p>line \(line) of the Outpost content-coding test page</p>\n".utf8)
        line += 1
    }
    return Array(bytes.prefix(count))
}

/// Feeds `input` to a coder in pieces of `piece` bytes.
func stream(_ coder: StreamCoder, _ input: [UInt8], piece: Int) throws -> [UInt8] {
    var output: [UInt8] = []
    var offset = 0
    while offset < input.count {
        let end = min(input.count, offset + piece)
        output += Array(buffer: try coder.process(ByteBuffer(bytes: input[offset..<end])))
        offset = end
    }
    output += Array(buffer: try coder.finish())
    return output
}

@Suite("ContentCoding: gzip and brotli")
struct CodingTests {
    @Test("gzip output decodes with the system's gzip, whatever the piece size", arguments: [1 << 20, 4096, 1])
    func gzipSystemTool(piece: Int) throws {
        let original = text(piece == 1 ? 20_000 : 200_000)
        let coded = try stream(try GzipEncoder(), original, piece: piece)
        #expect(coded.count < original.count / 3)
        #expect(try systemTool("/bin/gzip", ["-dc"], input: coded) == original)
    }

    @Test("brotli output decodes with the system's brotli, whatever the piece size", arguments: [1 << 20, 4096, 1])
    func brotliSystemTool(piece: Int) throws {
        let original = text(piece == 1 ? 20_000 : 200_000)
        let coded = try stream(try BrotliEncoder(quality: 5), original, piece: piece)
        #expect(coded.count < original.count / 3)
        #expect(try systemTool("/usr/bin/brotli", ["-dc"], input: coded) == original)
    }

    @Test("our decoders read the system tools' output, streamed in small pieces", arguments: ["gzip", "br"])
    func decodeSystemOutput(coding: String) throws {
        let original = text(150_000)
        let coded =
            coding == "gzip"
            ? try systemTool("/bin/gzip", ["-c"], input: original)
            : try systemTool("/usr/bin/brotli", ["-c"], input: original)
        let decoder = try #require(try Coders.decoder(for: coding, outputLimit: 1 << 20))
        #expect(try stream(decoder, coded, piece: 777) == original)
    }

    @Test("a decompression bomb stops at the output cap", arguments: ["gzip", "br"])
    func bomb(coding: String) throws {
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let encoder = try #require(try Coders.encoder(for: coding))
        let coded = Array(buffer: try encoder.code(ByteBuffer(bytes: zeros)))
        #expect(coded.count < 64 * 1024)
        let decoder = try #require(try Coders.decoder(for: coding, outputLimit: 1 << 20))
        #expect(throws: CodingError.outputLimitExceeded(limit: 1 << 20)) {
            _ = try stream(decoder, coded, piece: 1024)
        }
    }

    @Test("corrupt and truncated input is an error, not a crash", arguments: ["gzip", "br"])
    func corrupt(coding: String) throws {
        let decoder = try #require(try Coders.decoder(for: coding, outputLimit: 1 << 20))
        #expect(throws: CodingError.self) {
            _ = try stream(decoder, Array("this is not coded data at all, not even close".utf8), piece: 8)
        }
        let encoder = try #require(try Coders.encoder(for: coding))
        let coded = Array(buffer: try encoder.code(ByteBuffer(bytes: text(50_000))))
        let truncated = try #require(try Coders.decoder(for: coding, outputLimit: 1 << 20))
        #expect(throws: CodingError.self) {
            _ = try stream(truncated, Array(coded.prefix(coded.count / 2)), piece: 512)
        }
    }

    @Test("identity has no coder; unknown codings have none either")
    func noCoder() throws {
        #expect(try Coders.encoder(for: "identity") == nil)
        #expect(try Coders.decoder(for: "compress", outputLimit: 10) == nil)
    }
}

@Suite("ContentCoding: negotiation, types, tags")
struct NegotiationTests {
    static let all: Set<ContentCodingName> = [.br, .gzip, .identity]

    @Test(
        "RFC 9110 §12.5.3 the client's preference among what is available",
        arguments: [
            ("br;q=1.0, gzip;q=0.8", all, CodingNegotiation.Choice.coding(.br)),
            ("gzip;q=1.0, br;q=0.5", all, .coding(.gzip)),
            ("gzip, br", all, .coding(.br)),
            ("*", all, .coding(.br)),
            ("br;q=0, *", all, .coding(.gzip)),
            ("gzip;q=0, br;q=0", all, .coding(.identity)),
            ("identity;q=0, gzip", Set([.identity]), .notAcceptable),
            ("identity;q=0, br", Set([.identity, .gzip]), .notAcceptable),
            ("br", Set([.identity, .gzip]), .coding(.identity)),
            ("", all, .coding(.identity)),
            ("deflate", all, .coding(.identity)),
            ("*;q=0", Set([.identity]), .notAcceptable),
        ])
    func choose(accept: String, available: Set<ContentCodingName>, expected: CodingNegotiation.Choice) {
        let parsed = AcceptEncoding(lines: accept.isEmpty ? [] : [accept])
        #expect(CodingNegotiation.choose(parsed, available: available) == expected)
    }

    @Test(
        "compressible types",
        arguments: [
            ("text/html; charset=utf-8", true), ("application/json", true), ("image/svg+xml", true),
            ("image/png", false), ("application/octet-stream", false), ("TEXT/CSS", true), ("video/mp4", false),
            (" text/plain ;format=flowed", true), ("\tApplication/JSON\t", true), ("textual/html", false),
            ("text", false), ("", false), ("application/jsonx", false), ("application/jso", false),
            ("/html", false), ("image/svg+xml;charset=utf-8", true),
        ])
    func types(contentType: String, expected: Bool) {
        #expect(CompressibleTypes().contains(contentType: contentType) == expected)
    }

    @Test("configured compressible types: exact and type/* patterns, any case; changing them takes effect")
    func configuredTypes() {
        var types = CompressibleTypes(patterns: ["Application/Foo", "font/*"])
        #expect(types.contains(contentType: "application/foo"))
        #expect(types.contains(contentType: "FONT/woff2"))
        #expect(!types.contains(contentType: "text/html"))
        #expect(!types.contains(contentType: nil))
        types.patterns = ["text/*"]
        #expect(types.contains(contentType: "text/html"))
        #expect(!types.contains(contentType: "font/woff2"))
    }

    @Test("RFC 9110 §8.8.3 coded representations get their own strong tags, and map back")
    func tags() {
        let origin = EntityTag(opaque: "abc", isWeak: false)
        let br = CodedEntityTag.tag(origin, coding: .br)
        #expect(br.headerValue == "\"abc-br\"")
        #expect(!br.strongMatches(origin))
        #expect(CodedEntityTag.split(br) == (origin, .br))
        #expect(CodedEntityTag.split(origin) == (origin, .identity))
        #expect(CodedEntityTag.tag(origin, coding: .identity) == origin)
    }

    @Test("RFC 9110 §14.6 multipart/byteranges layout and length")
    func multipart() throws {
        let spec = try #require(ByteRangeSpec("bytes=0-4, 10-14"))
        guard case .multiple(let ranges) = spec.resolveAll(length: 100, maxRanges: 8) else {
            Issue.record("expected several ranges")
            return
        }
        let body = MultipartByteranges(ranges: ranges, length: 100, contentType: "text/plain", boundary: "BOUND")
        let payload = Array("0123456789abcdefghij".utf8) + [UInt8](repeating: 0x2E, count: 80)
        var wire = ByteBuffer()
        for var part in body.parts {
            wire.writeBuffer(&part.header)
            wire.writeBytes(payload[Int(part.lower)...Int(part.upper)])
        }
        var trailer = body.trailer
        wire.writeBuffer(&trailer)
        #expect(Int64(wire.readableBytes) == body.contentLength)
        #expect(
            String(buffer: wire)
                == "--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/100\r\n\r\n01234"
                + "\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-14/100\r\n\r\nabcde\r\n--BOUND--\r\n"
        )
    }

    @Test("overlapping or too many ranges get the whole representation")
    func amplification() throws {
        let overlapping = try #require(ByteRangeSpec("bytes=0-50, 40-60"))
        guard case .whole = overlapping.resolveAll(length: 100, maxRanges: 8) else {
            Issue.record("overlap must give the whole body")
            return
        }
        let many = try #require(ByteRangeSpec("bytes=0-0,2-2,4-4,6-6"))
        guard case .whole = many.resolveAll(length: 100, maxRanges: 3) else {
            Issue.record("too many ranges must give the whole body")
            return
        }
    }
}
