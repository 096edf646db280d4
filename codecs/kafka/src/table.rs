//! The API table: name and first flexible version of every API key, and the header version
//! rules that follow from it.

/// "Never flexible" in [`Api::first_flexible`].
const NEVER: i16 = i16::MAX;

/// One Kafka API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// The API key.
    pub key: i16,
    /// The name Kafka's message schemas use (`Produce`, `Fetch`, ...).
    pub name: &'static str,
    /// The first version whose messages are flexible (compact strings and arrays, tagged
    /// fields, request header v2, response header v1); `i16::MAX` when none is.
    pub first_flexible: i16,
}

macro_rules! apis {
    ($($key:literal $name:ident $flex:expr;)*) => {
        /// Every API key this crate knows, in key order (from Kafka's message schemas; the
        /// first flexible versions as in `PROTOCOLS.md`, checked against `kafka-protocol`).
        pub const APIS: &[Api] = &[$(Api { key: $key, name: stringify!($name), first_flexible: $flex }),*];
    };
}

apis! {
    0 Produce 9;
    1 Fetch 12;
    2 ListOffsets 6;
    3 Metadata 9;
    4 LeaderAndIsr 4;
    5 StopReplica 2;
    6 UpdateMetadata 6;
    7 ControlledShutdown 3;
    8 OffsetCommit 8;
    9 OffsetFetch 6;
    10 FindCoordinator 3;
    11 JoinGroup 6;
    12 Heartbeat 4;
    13 LeaveGroup 4;
    14 SyncGroup 4;
    15 DescribeGroups 5;
    16 ListGroups 3;
    17 SaslHandshake NEVER;
    18 ApiVersions 3;
    19 CreateTopics 5;
    20 DeleteTopics 4;
    21 DeleteRecords 2;
    22 InitProducerId 2;
    23 OffsetForLeaderEpoch 4;
    24 AddPartitionsToTxn 3;
    25 AddOffsetsToTxn 3;
    26 EndTxn 3;
    27 WriteTxnMarkers 1;
    28 TxnOffsetCommit 3;
    29 DescribeAcls 2;
    30 CreateAcls 2;
    31 DeleteAcls 2;
    32 DescribeConfigs 4;
    33 AlterConfigs 2;
    34 AlterReplicaLogDirs 2;
    35 DescribeLogDirs 2;
    36 SaslAuthenticate 2;
    37 CreatePartitions 2;
    38 CreateDelegationToken 2;
    39 RenewDelegationToken 2;
    40 ExpireDelegationToken 2;
    41 DescribeDelegationToken 2;
    42 DeleteGroups 2;
    43 ElectLeaders 2;
    44 IncrementalAlterConfigs 1;
    45 AlterPartitionReassignments 0;
    46 ListPartitionReassignments 0;
    47 OffsetDelete NEVER;
    48 DescribeClientQuotas 1;
    49 AlterClientQuotas 1;
    50 DescribeUserScramCredentials 0;
    51 AlterUserScramCredentials 0;
    52 Vote 0;
    53 BeginQuorumEpoch 1;
    54 EndQuorumEpoch 1;
    55 DescribeQuorum 0;
    56 AlterPartition 0;
    57 UpdateFeatures 0;
    58 Envelope 0;
    59 FetchSnapshot 0;
    60 DescribeCluster 0;
    61 DescribeProducers 0;
    62 BrokerRegistration 0;
    63 BrokerHeartbeat 0;
    64 UnregisterBroker 0;
    65 DescribeTransactions 0;
    66 ListTransactions 0;
    67 AllocateProducerIds 0;
    68 ConsumerGroupHeartbeat 0;
    69 ConsumerGroupDescribe 0;
    70 ControllerRegistration 0;
    71 GetTelemetrySubscriptions 0;
    72 PushTelemetry 0;
    73 AssignReplicasToDirs 0;
    74 ListConfigResources 0;
    75 DescribeTopicPartitions 0;
    76 ShareGroupHeartbeat 1;
    77 ShareGroupDescribe 1;
    78 ShareFetch 1;
    79 ShareAcknowledge 1;
    80 AddRaftVoter 0;
    81 RemoveRaftVoter 0;
    82 UpdateRaftVoter 0;
    83 InitializeShareGroupState 0;
    84 ReadShareGroupState 0;
    85 WriteShareGroupState 0;
    86 DeleteShareGroupState 0;
    87 ReadShareGroupStateSummary 0;
    88 StreamsGroupHeartbeat 0;
    89 StreamsGroupDescribe 0;
    90 DescribeShareGroupOffsets 0;
    91 AlterShareGroupOffsets 0;
    92 DeleteShareGroupOffsets 0;
}

/// Well-known keys this codec treats specially.
pub(crate) const PRODUCE: i16 = 0;
pub(crate) const FETCH: i16 = 1;
pub(crate) const METADATA: i16 = 3;
pub(crate) const CONTROLLED_SHUTDOWN: i16 = 7;
pub(crate) const SASL_HANDSHAKE: i16 = 17;
pub(crate) const API_VERSIONS: i16 = 18;

/// The API with this key, if the table knows it.
///
/// ```
/// assert_eq!(codec_kafka::api(3).map(|a| a.name), Some("Metadata"));
/// assert_eq!(codec_kafka::api(1000), None);
/// ```
pub fn api(key: i16) -> Option<&'static Api> {
    // The table is dense from 0 to its last key.
    let api = APIS.get(usize::try_from(key).ok()?)?;
    (api.key == key).then_some(api)
}

/// True when `version` of API `key` uses flexible encoding. Unknown keys are never flexible.
pub fn is_flexible(key: i16, version: i16) -> bool {
    api(key).is_some_and(|a| version >= a.first_flexible)
}

/// The request header version (0, 1 or 2) of `version` of API `key`: 2 for flexible
/// versions, 0 for ControlledShutdown v0, 1 otherwise (and for unknown keys).
///
/// ```
/// use codec_kafka::request_header_version;
/// assert_eq!(request_header_version(0, 8), 1);
/// assert_eq!(request_header_version(0, 9), 2);
/// assert_eq!(request_header_version(7, 0), 0);
/// assert_eq!(request_header_version(17, 1), 1);
/// ```
pub fn request_header_version(key: i16, version: i16) -> i16 {
    if key == CONTROLLED_SHUTDOWN && version == 0 {
        0
    } else if is_flexible(key, version) {
        2
    } else {
        1
    }
}

/// The response header version (0 or 1) of `version` of API `key`: 1 for flexible versions,
/// except ApiVersions, whose responses always use header v0 (so that a client can read the
/// answer to a version the broker does not support); 0 for unknown keys.
///
/// ```
/// use codec_kafka::response_header_version;
/// assert_eq!(response_header_version(3, 9), 1);
/// assert_eq!(response_header_version(18, 3), 0);
/// assert_eq!(response_header_version(1000, 5), 0);
/// ```
pub fn response_header_version(key: i16, version: i16) -> i16 {
    if key != API_VERSIONS && is_flexible(key, version) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_ordered() {
        for (i, a) in APIS.iter().enumerate() {
            assert_eq!(a.key as usize, i, "{}", a.name);
        }
        assert_eq!(api(-1), None);
        assert_eq!(api(93), None);
    }

    #[test]
    fn header_rules() {
        assert_eq!(request_header_version(SASL_HANDSHAKE, 1), 1);
        assert_eq!(request_header_version(47, 0), 1);
        assert_eq!(request_header_version(API_VERSIONS, 3), 2);
        assert_eq!(response_header_version(API_VERSIONS, 4), 0);
        assert_eq!(request_header_version(CONTROLLED_SHUTDOWN, 1), 1);
        assert_eq!(request_header_version(CONTROLLED_SHUTDOWN, 3), 2);
        assert_eq!(request_header_version(999, 0), 1);
    }
}
