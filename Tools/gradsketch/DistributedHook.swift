import Foundation

/// `gradsketch query|select|index build` as distributed commands: when an MPI launcher
/// started this process, or when one of the arguments is a sharded store directory, the CLI
/// execs the sibling `gradsketch-mpi` (which alone links MPI) with the same arguments under
/// the distributed subcommand's name (Spec/distributed.md §3.7). Without a launcher,
/// gradsketch-mpi runs as a group of one (OpenMPI's singleton MPI_Init).
enum DistributedHook {
    /// The launcher variables of OpenMPI, PMIx (OpenMPI 4+, Slurm) and MPICH's PMI.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"]

    /// The shard map's file name (`ShardMap.fileName`; Spec/format.md "Sharded stores").
    static let shardMapFile = "gradsketch-shards.json"

    /// The gradsketch-mpi arguments for `arguments`, or nil when the command stays here.
    static func translated(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) -> [String]? {
        let subcommand: String
        let rest: [String]
        switch arguments.first {
        case "query": (subcommand, rest) = ("query", Array(arguments.dropFirst()))
        case "select": (subcommand, rest) = ("select", Array(arguments.dropFirst()))
        case "index" where arguments.count > 1 && arguments[1] == "build": (subcommand, rest) = ("index-build", Array(arguments.dropFirst(2)))
        default: return nil
        }
        let launched = launcherVariables.contains { environment[$0] != nil }
        let sharded = rest.prefix { $0 != "--" }.contains { argument in
            !argument.hasPrefix("-") && FileManager.default.fileExists(atPath: argument + "/" + shardMapFile)
        }
        return launched || sharded ? [subcommand] + rest : nil
    }
}
