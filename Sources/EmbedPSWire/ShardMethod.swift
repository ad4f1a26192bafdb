/// Full method paths of the shard service (see Protos/embedps.proto).
public enum ShardMethod {
    public static let pull = "/embedps.v1.Shard/Pull"
    public static let push = "/embedps.v1.Shard/Push"
    public static let createTable = "/embedps.v1.Shard/CreateTable"
    public static let describeTable = "/embedps.v1.Shard/DescribeTable"
    public static let listTables = "/embedps.v1.Shard/ListTables"
    public static let dropTable = "/embedps.v1.Shard/DropTable"
    public static let shardStatus = "/embedps.v1.Shard/ShardStatus"
    public static let flush = "/embedps.v1.Shard/Flush"
    public static let registerItems = "/embedps.v1.Shard/RegisterItems"
    public static let pullPooled = "/embedps.v1.Shard/PullPooled"
    public static let pushPooled = "/embedps.v1.Shard/PushPooled"
    public static let sparsityReport = "/embedps.v1.Shard/SparsityReport"
    public static let sparsityStep = "/embedps.v1.Shard/SparsityStep"
    public static let dnisReport = "/embedps.v1.Shard/DnisReport"
    public static let dnisAssignBlocks = "/embedps.v1.Shard/DnisAssignBlocks"
    public static let dnisAlpha = "/embedps.v1.Shard/DnisAlpha"
    public static let dnisAlphaGradient = "/embedps.v1.Shard/DnisAlphaGradient"
    public static let dnisPrune = "/embedps.v1.Shard/DnisPrune"
    public static let pullCompact = "/embedps.v1.Shard/PullCompact"
    public static let compact = "/embedps.v1.Shard/Compact"
    public static let freeze = "/embedps.v1.Shard/Freeze"
    public static let thaw = "/embedps.v1.Shard/Thaw"
    public static let createCheckpoint = "/embedps.v1.Shard/CreateCheckpoint"
    public static let listCheckpoints = "/embedps.v1.Shard/ListCheckpoints"
    public static let restoreCheckpoint = "/embedps.v1.Shard/RestoreCheckpoint"
    public static let exportRows = "/embedps.v1.Shard/ExportRows"
    public static let importRows = "/embedps.v1.Shard/ImportRows"
    public static let getShardMap = "/embedps.v1.Shard/GetShardMap"
    public static let setShardMap = "/embedps.v1.Shard/SetShardMap"
    public static let beginMigration = "/embedps.v1.Shard/BeginMigration"
    public static let exportSlotRows = "/embedps.v1.Shard/ExportSlotRows"
    public static let importSlotRows = "/embedps.v1.Shard/ImportSlotRows"
    public static let endMigration = "/embedps.v1.Shard/EndMigration"
    public static let exportItems = "/embedps.v1.Shard/ExportItems"
    public static let getDnisState = "/embedps.v1.Shard/GetDnisState"
    public static let setDnisState = "/embedps.v1.Shard/SetDnisState"
    public static let healthCheck = "/grpc.health.v1.Health/Check"
}

/// Full method paths of the lookup service (see Protos/embedps.proto).
public enum LookupMethod {
    public static let lookup = "/embedps.v1.Lookup/Lookup"
    public static let lookupPooled = "/embedps.v1.Lookup/LookupPooled"
}

/// Request metadata keys of the shard service.
public enum ShardMetadata {
    /// Idempotency key of a Push (32 hex digits): a shard that already applied a push with this id answers
    /// a retry with the same result and applies nothing.
    public static let requestID = "x-embedps-request-id"
}
