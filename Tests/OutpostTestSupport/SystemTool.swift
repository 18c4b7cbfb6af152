import Foundation

/// Runs a system tool with `input` on stdin and returns its stdout: decoding with `gzip -dc`
/// and `brotli -dc` checks our coded bytes independently of our own coders. The input is
/// written on another thread so a full stdout pipe cannot deadlock the test.
public func systemTool(_ path: String, _ arguments: [String], input: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    let writer = Thread {
        stdin.fileHandleForWriting.write(Data(input))
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return [UInt8](output)
}

/// Decodes `bytes` of `coding` (`br` or `gzip`) with the system's tool.
public func systemDecode(_ coding: String, _ bytes: [UInt8]) throws -> [UInt8] {
    try systemTool(coding == "br" ? "/usr/bin/brotli" : "/bin/gzip", ["-dc"], input: bytes)
}
