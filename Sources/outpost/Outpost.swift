import ArgumentParser

@main
struct Outpost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outpost",
        abstract: "Outpost: a caching CDN edge node.",
        subcommands: [Serve.self])
}
