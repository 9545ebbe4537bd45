// SPDX-License-Identifier: Apache-2.0
// EdgesealAnchor: anchors transparency-log heads on an EVM chain; a head is accepted only with an
// RFC 9162 2.1.4.2 consistency proof from the previous one, so the chain refuses forks and
// rollbacks. docs/anchoring.md describes the contract, its gas and its events.
pragma solidity 0.8.37;

contract EdgesealAnchor {
    /// One anchored head: the log `originHash` = sha256(checkpoint origin line) reached `size`
    /// entries with Merkle root `root` (RFC 9162 2.1.1) and contract state hash `stateHash`
    /// (the checkpoint's "edgeseal-state" extension line, zero if it has none).
    event Anchored(bytes32 indexed originHash, uint64 size, bytes32 root, bytes32 stateHash);

    /// The sender is not the submitter this contract was deployed for.
    error NotSubmitter();
    /// The previous head given does not match the stored one.
    error WrongPrevious();
    /// The new head is smaller than the anchored one.
    error Rollback();
    /// The new head is no larger than the anchored one: a repeat, or a fork of equal size.
    error NotNewer();
    /// The consistency proof does not show the new head extends the anchored one.
    error BadProof();

    /// The only account that may anchor (fixed at deployment): nobody else can claim an origin
    /// first or extend one, and verifiers who pin this contract pin it too.
    address public immutable submitter;

    /// origin hash => keccak256(size, root, stateHash) of the newest head; zero if none. One
    /// storage slot per origin keeps an anchor's storage cost to one SSTORE.
    mapping(bytes32 => bytes32) public heads;

    /// Deploy for the account `submitter_` (the gateway's anchoring account).
    constructor(address submitter_) {
        submitter = submitter_;
    }

    /// Return the commitment stored for a head (what `heads` holds once it is anchored).
    function commitment(uint64 size, bytes32 root, bytes32 stateHash)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(size, root, stateHash));
    }

    /// Anchor (size, root, stateHash) for originHash. The first anchor of an origin takes
    /// prevSize = 0 and zero hashes; every later one names the anchored head (prevSize,
    /// prevRoot, prevState) and proves consistency from it (RFC 9162 2.1.4.2, SHA-256 with the
    /// 0x01 interior-node prefix). Reverts NotSubmitter, WrongPrevious, Rollback, NotNewer or
    /// BadProof; emits Anchored.
    function anchor(
        bytes32 originHash,
        uint64 prevSize,
        bytes32 prevRoot,
        bytes32 prevState,
        uint64 size,
        bytes32 root,
        bytes32 stateHash,
        bytes32[] calldata proof
    ) external {
        if (msg.sender != submitter) revert NotSubmitter();
        bytes32 stored = heads[originHash];
        if (stored == bytes32(0)) {
            if (prevSize != 0 || prevRoot != bytes32(0) || prevState != bytes32(0)) {
                revert WrongPrevious();
            }
        } else {
            if (stored != commitment(prevSize, prevRoot, prevState)) {
                revert WrongPrevious();
            }
            if (size < prevSize) revert Rollback();
            if (size == prevSize) revert NotNewer();
            if (prevSize != 0 && !_consistent(prevSize, size, prevRoot, root, proof)) {
                revert BadProof();
            }
        }
        heads[originHash] = commitment(size, root, stateHash);
        emit Anchored(originHash, size, root, stateHash);
    }

    /// Return true if `proof` shows the tree (size1, root1) is a prefix of (size2, root2).
    /// RFC 9162 2.1.4.2 verbatim; precondition 0 < size1 < size2.
    function _consistent(
        uint256 size1,
        uint256 size2,
        bytes32 root1,
        bytes32 root2,
        bytes32[] calldata proof
    ) private view returns (bool) {
        uint256 n = proof.length;
        if (n == 0) return false;
        uint256 i;
        bytes32 fr;
        bytes32 sr;
        if (size1 & (size1 - 1) == 0) {
            fr = root1; // size1 is a power of two: the proof omits root1
        } else {
            fr = proof[0];
            i = 1;
        }
        sr = fr;
        uint256 fn = size1 - 1;
        uint256 sn = size2 - 1;
        while (fn & 1 == 1) {
            fn >>= 1;
            sn >>= 1;
        }
        for (; i < n; ++i) {
            if (sn == 0) return false;
            bytes32 c = proof[i];
            if (fn & 1 == 1 || fn == sn) {
                fr = _node(c, fr);
                sr = _node(c, sr);
                if (fn & 1 == 0) {
                    while (fn != 0 && fn & 1 == 0) {
                        fn >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                sr = _node(sr, c);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 && fr == root1 && sr == root2;
    }

    /// Return SHA-256(0x01 || left || right), the RFC 9162 2.1.1 interior node hash, through the
    /// SHA-256 precompile (address 0x02) on scratch memory.
    function _node(bytes32 left, bytes32 right) private view returns (bytes32 out) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 0x01)
            mstore(add(p, 1), left)
            mstore(add(p, 33), right)
            if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
            out := mload(0x00)
        }
    }
}
