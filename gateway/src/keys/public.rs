//! Public key material, whatever file it came from, and the one set of rules every verification key must pass.
//!
//! A JWK (from a JWKS file or URL) and a PEM file both become a [`PublicKey`] first, and [`PublicKey::check`] is
//! the only place that decides whether such a key is usable: RSA moduli of at least 2048 bits with an odd public
//! exponent of at least 65537, EC points on their curve (aws-lc-rs parses and validates the point), Ed25519 keys
//! of 32 bytes. A key that passes is parsed for every algorithm it is bound to, so a loaded key never fails
//! tokens silently later.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject as _;

/// The shortest RSA modulus accepted, in bits.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;
/// The longest RSA modulus accepted, in bits: aws-lc-rs' RSA verification parameters stop there.
pub const MAX_RSA_MODULUS_BITS: usize = 8192;
/// The largest RSA public exponent accepted has this many bits (aws-lc's limit for public keys).
pub const MAX_RSA_EXPONENT_BITS: u32 = 33;
/// The smallest RSA public exponent accepted (F4); smaller exponents, and even ones, are refused.
pub const MIN_RSA_EXPONENT: u64 = 65_537;

/// Why one key was refused. The same reasons apply to JWKs and PEM files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// No usable `kid`.
    #[error("missing or invalid kid")]
    Kid,
    /// `use` is present and not `sig`.
    #[error("use is not sig")]
    NotForSignatures,
    /// `key_ops` is present and does not allow `verify`.
    #[error("key_ops does not allow verify")]
    KeyOps,
    /// `kty: oct`: a symmetric key.
    #[error("symmetric key")]
    Symmetric,
    /// An unsupported key type or curve.
    #[error("unsupported key type or curve")]
    Unsupported,
    /// `alg` (or the configured algorithm) is not an asymmetric algorithm of the key's type.
    #[error("alg conflicts with the key type")]
    AlgConflict,
    /// None of the key's algorithms is allowed for its issuer.
    #[error("alg not allowed for the issuer")]
    AlgNotAllowed,
    /// Missing or malformed key components.
    #[error("invalid key components")]
    Components,
    /// RSA modulus under 2048 bits.
    #[error("RSA modulus shorter than 2048 bits")]
    WeakRsa,
    /// RSA modulus over 8192 bits, which aws-lc-rs does not verify with.
    #[error("RSA modulus longer than 8192 bits")]
    RsaTooLarge,
    /// RSA public exponent even, under 65537, or over 33 bits.
    #[error("RSA public exponent even or smaller than 65537")]
    RsaExponent,
    /// An EC point that is not on its curve (or not an uncompressed point).
    #[error("EC point not on the curve")]
    EcPoint,
    /// A PEM file that holds no public key in a supported form.
    #[error("not a PEM public key")]
    Pem,
    /// Two keys share the kid; both are dropped.
    #[error("duplicate kid")]
    DuplicateKid,
}

impl KeyRefusal {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyRefusal::Kid => "kid",
            KeyRefusal::NotForSignatures => "use_not_sig",
            KeyRefusal::KeyOps => "key_ops_not_verify",
            KeyRefusal::Symmetric => "symmetric",
            KeyRefusal::Unsupported => "unsupported",
            KeyRefusal::AlgConflict => "alg_conflict",
            KeyRefusal::AlgNotAllowed => "alg_not_allowed",
            KeyRefusal::Components => "components",
            KeyRefusal::WeakRsa => "weak_rsa",
            KeyRefusal::RsaTooLarge => "rsa_too_large",
            KeyRefusal::RsaExponent => "rsa_exponent",
            KeyRefusal::EcPoint => "ec_point",
            KeyRefusal::Pem => "invalid_pem",
            KeyRefusal::DuplicateKid => "duplicate_kid",
        }
    }
}

/// A public key, as components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and public exponent, big-endian without leading zero bytes.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// ECDSA on P-256 (`ES256`) or P-384 (`ES384`): the uncompressed point `04 || x || y`.
    Ec {
        /// The curve's one algorithm.
        alg: Algorithm,
        /// The point.
        point: Vec<u8>,
    },
    /// Ed25519: the 32-byte public key.
    Ed25519(Vec<u8>),
}

const RSA_FAMILY: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// aws-lc-rs' verification parameters for a JWS algorithm (the same ones jsonwebtoken's aws_lc backend uses).
pub fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

fn trim_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().skip_while(|b| *b == 0).collect()
}

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent (leading zero bytes allowed).
    pub fn rsa(n: &[u8], e: &[u8]) -> PublicKey {
        PublicKey::Rsa {
            n: trim_leading_zeros(n),
            e: trim_leading_zeros(e),
        }
    }

    /// The algorithms a key of this type and curve can verify.
    pub fn family(&self) -> Vec<Algorithm> {
        match self {
            PublicKey::Rsa { .. } => RSA_FAMILY.to_vec(),
            PublicKey::Ec { alg, .. } => vec![*alg],
            PublicKey::Ed25519(_) => vec![Algorithm::EdDSA],
        }
    }

    /// The rules every verification key must pass, whatever its source.
    pub fn check(&self) -> Result<(), KeyRefusal> {
        match self {
            PublicKey::Rsa { n, e } => {
                let Some(first) = n.first() else {
                    return Err(KeyRefusal::Components);
                };
                let bits = n.len() * 8 - first.leading_zeros() as usize;
                if bits < MIN_RSA_MODULUS_BITS {
                    return Err(KeyRefusal::WeakRsa);
                }
                if bits > MAX_RSA_MODULUS_BITS {
                    return Err(KeyRefusal::RsaTooLarge);
                }
                if n.last().is_some_and(|b| b % 2 == 0) {
                    return Err(KeyRefusal::Components); // an even modulus is no RSA modulus
                }
                if e.is_empty() {
                    return Err(KeyRefusal::Components);
                }
                if e.len() > 8 {
                    return Err(KeyRefusal::RsaExponent);
                }
                let exponent = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                if exponent % 2 == 0
                    || exponent < MIN_RSA_EXPONENT
                    || 64 - exponent.leading_zeros() > MAX_RSA_EXPONENT_BITS
                {
                    return Err(KeyRefusal::RsaExponent);
                }
                Ok(())
            }
            PublicKey::Ec { alg, point } => {
                let coordinate = if *alg == Algorithm::ES256 { 32 } else { 48 };
                if point.len() != 1 + 2 * coordinate || point.first() != Some(&0x04) {
                    return Err(KeyRefusal::Components);
                }
                // Parsing the point validates it: on the curve, not the point at infinity.
                let params = verification_algorithm(*alg).ok_or(KeyRefusal::Unsupported)?;
                ParsedPublicKey::new(params, point).map_err(|_| KeyRefusal::EcPoint)?;
                Ok(())
            }
            PublicKey::Ed25519(x) => {
                if x.len() != 32 {
                    return Err(KeyRefusal::Components);
                }
                Ok(())
            }
        }
    }

    /// The key parsed by aws-lc-rs for each of `algorithms` (all of this key's family). A key that aws-lc-rs
    /// cannot use for one of them is refused rather than loaded to fail every token.
    pub fn parse_for(
        &self,
        algorithms: &[Algorithm],
    ) -> Result<Vec<(Algorithm, ParsedPublicKey)>, KeyRefusal> {
        let bytes: Vec<u8> = match self {
            PublicKey::Rsa { n, e } => aws_lc_rs::rsa::PublicKeyComponents { n: &n[..], e: &e[..] }
                .as_der()
                .map_err(|_| KeyRefusal::Components)?
                .as_ref()
                .to_vec(),
            PublicKey::Ec { point, .. } => point.clone(),
            PublicKey::Ed25519(x) => x.clone(),
        };
        algorithms
            .iter()
            .map(|alg| {
                let params = verification_algorithm(*alg).ok_or(KeyRefusal::AlgConflict)?;
                ParsedPublicKey::new(params, &bytes)
                    .map(|parsed| (*alg, parsed))
                    .map_err(|_| KeyRefusal::Components)
            })
            .collect()
    }

    /// A key from a PEM file: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC P-256/P-384 or Ed25519) or, for RSA,
    /// `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyRefusal> {
        if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem) {
            return PublicKey::from_spki(spki.as_ref());
        }
        let der = pkcs1_pem(pem).ok_or(KeyRefusal::Pem)?;
        PublicKey::from_pkcs1(&der)
    }

    /// A key from a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, KeyRefusal> {
        let mut outer = Der(der);
        let mut spki = Der(outer.read(SEQUENCE).ok_or(KeyRefusal::Pem)?);
        outer.end().ok_or(KeyRefusal::Pem)?;
        let mut id = Der(spki.read(SEQUENCE).ok_or(KeyRefusal::Pem)?);
        let bits = spki.read(BIT_STRING).ok_or(KeyRefusal::Pem)?;
        spki.end().ok_or(KeyRefusal::Pem)?;
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(KeyRefusal::Pem),
        };
        let oid = id.read(OID).ok_or(KeyRefusal::Pem)?;
        match oid {
            RSA_ENCRYPTION => {
                if !id.is_empty() {
                    id.read(NULL).ok_or(KeyRefusal::Pem)?;
                }
                id.end().ok_or(KeyRefusal::Pem)?;
                PublicKey::from_pkcs1(key)
            }
            EC_PUBLIC_KEY => {
                let alg = match id.read(OID).ok_or(KeyRefusal::Pem)? {
                    P256 => Algorithm::ES256,
                    P384 => Algorithm::ES384,
                    _ => return Err(KeyRefusal::Unsupported),
                };
                id.end().ok_or(KeyRefusal::Pem)?;
                Ok(PublicKey::Ec {
                    alg,
                    point: key.to_vec(),
                })
            }
            ED25519 => {
                id.end().ok_or(KeyRefusal::Pem)?;
                Ok(PublicKey::Ed25519(key.to_vec()))
            }
            _ => Err(KeyRefusal::Unsupported),
        }
    }

    /// An RSA key from a DER PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1(der: &[u8]) -> Result<PublicKey, KeyRefusal> {
        let mut outer = Der(der);
        let mut seq = Der(outer.read(SEQUENCE).ok_or(KeyRefusal::Pem)?);
        outer.end().ok_or(KeyRefusal::Pem)?;
        let n = seq.read(INTEGER).ok_or(KeyRefusal::Pem)?;
        let e = seq.read(INTEGER).ok_or(KeyRefusal::Pem)?;
        seq.end().ok_or(KeyRefusal::Pem)?;
        // DER integers are two's complement: a set top bit would make them negative.
        if n.first().is_none_or(|b| b & 0x80 != 0) || e.first().is_none_or(|b| b & 0x80 != 0) {
            return Err(KeyRefusal::Components);
        }
        Ok(PublicKey::rsa(n, e))
    }
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const NULL: u8 = 0x05;
/// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (P-256)
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34 (P-384)
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.3.101.112
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A minimal DER reader: definite, minimally encoded lengths of up to two bytes (a public key is far smaller).
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The contents of the next element, which must carry `tag`.
    fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81 => {
                let (&l, rest) = rest.split_first()?;
                (l >= 0x80).then_some((usize::from(l), rest))?
            }
            0x82 => {
                let l = rest.get(..2)?;
                let len = usize::from(l[0]) << 8 | usize::from(l[1]);
                (len >= 0x100).then_some((len, rest.get(2..)?))?
            }
            _ => return None,
        };
        let contents = rest.get(..len)?;
        self.0 = rest.get(len..)?;
        Some(contents)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Some` when everything was read.
    fn end(&self) -> Option<()> {
        self.is_empty().then_some(())
    }
}

/// The DER inside an `RSA PUBLIC KEY` PEM block.
fn pkcs1_pem(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN RSA PUBLIC KEY-----";
    const END: &str = "-----END RSA PUBLIC KEY-----";
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find(BEGIN)? + BEGIN.len();
    let len = text[start..].find(END)?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// An odd modulus of exactly `bits` bits.
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xc5u8; bits.div_ceil(8)];
        let top = bits % 8;
        n[0] = if top == 0 { 0xc5 } else { (1u8 << (top - 1)) | 1 };
        n
    }

    fn rsa_key(name: &str) -> (Vec<u8>, Vec<u8>) {
        match PublicKey::from_pem(&test_key(name)).unwrap() {
            PublicKey::Rsa { n, e } => (n, e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rsa_keys_need_2048_bits_and_an_odd_exponent_of_at_least_65537() {
        let f4 = [1u8, 0, 1];
        let (real_n, _) = rsa_key("rsa-a.pub.pem");
        type Case<'a> = (Vec<u8>, &'a [u8], Result<(), KeyRefusal>);
        let cases: [Case<'_>; 16] = [
            (modulus(8192), &f4, Ok(())),
            (modulus(8200), &f4, Err(KeyRefusal::RsaTooLarge)),
            (modulus(2048), &[1, 0xff, 0xff, 0xff, 0xff], Ok(())), // 2^33 - 1
            (modulus(2048), &[2, 0, 0, 0, 1], Err(KeyRefusal::RsaExponent)), // 2^33 + 1
            (modulus(2048), &f4, Ok(())),
            (real_n.clone(), &f4, Ok(())),
            (modulus(4096), &[0, 1, 0, 1], Ok(())), // leading zeros of the exponent do not count
            (modulus(512), &f4, Err(KeyRefusal::WeakRsa)),
            (modulus(1024), &f4, Err(KeyRefusal::WeakRsa)),
            (modulus(2047), &f4, Err(KeyRefusal::WeakRsa)),
            (
                [vec![0u8; 4], modulus(2040)].concat(),
                &f4,
                Err(KeyRefusal::WeakRsa),
            ),
            (real_n.clone(), &[1], Err(KeyRefusal::RsaExponent)),
            (real_n.clone(), &[3], Err(KeyRefusal::RsaExponent)),
            (real_n.clone(), &[1, 0, 0], Err(KeyRefusal::RsaExponent)), // 65536: even
            (
                real_n.clone(),
                &[1, 0, 0, 0, 0, 0, 0, 2],
                Err(KeyRefusal::RsaExponent),
            ),
            (real_n, &[], Err(KeyRefusal::Components)),
        ];
        for (n, e, want) in cases {
            let bits = n.len() * 8;
            assert_eq!(PublicKey::rsa(&n, e).check(), want, "{bits} bits, e = {e:?}");
        }
        let mut even = modulus(2048);
        *even.last_mut().unwrap() = 0xc4;
        assert_eq!(PublicKey::rsa(&even, &f4).check(), Err(KeyRefusal::Components));
        assert_eq!(PublicKey::rsa(&[], &f4).check(), Err(KeyRefusal::Components));
    }

    #[test]
    fn ec_points_must_lie_on_their_curve() {
        for (name, alg) in [
            ("ec-a.pub.pem", Algorithm::ES256),
            ("ec384.pub.pem", Algorithm::ES384),
        ] {
            let key = PublicKey::from_pem(&test_key(name)).unwrap();
            let PublicKey::Ec { alg: curve, point } = &key else {
                panic!("{key:?}");
            };
            assert_eq!(*curve, alg);
            assert_eq!(key.check(), Ok(()), "{name}");
            let mut off = point.clone();
            *off.last_mut().unwrap() ^= 1; // y changed: (x, y') is not on the curve
            let zero = [vec![4u8], vec![0u8; point.len() - 1]].concat();
            let mut compressed = point[..point.len() / 2 + 1].to_vec();
            compressed[0] = 2;
            let mut prefix = point.clone();
            prefix[0] = 6;
            let cases = [
                (off, KeyRefusal::EcPoint),
                (zero, KeyRefusal::EcPoint),
                (compressed, KeyRefusal::Components),
                (prefix, KeyRefusal::Components),
            ];
            for (point, want) in cases {
                assert_eq!(PublicKey::Ec { alg, point }.check(), Err(want), "{name}");
            }
        }
        assert_eq!(
            PublicKey::Ed25519(vec![1; 31]).check(),
            Err(KeyRefusal::Components)
        );
    }

    #[test]
    fn pem_files_become_the_same_components_as_their_jwks() {
        let (n, e) = rsa_key("rsa-a.pub.pem");
        assert_eq!((n.len(), e.as_slice()), (256, &[1u8, 0, 1][..]));
        assert!(matches!(
            PublicKey::from_pem(&test_key("ed.pub.pem")),
            Ok(PublicKey::Ed25519(x)) if x.len() == 32
        ));
        // The same RSA key as PKCS#1 `RSA PUBLIC KEY`: the SubjectPublicKeyInfo's bit string.
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(&test_key("rsa-a.pub.pem")).unwrap();
        let mut outer = Der(spki.as_ref());
        let mut seq = Der(outer.read(SEQUENCE).unwrap());
        seq.read(SEQUENCE).unwrap();
        let pkcs1 = &seq.read(BIT_STRING).unwrap()[1..];
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            STANDARD.encode(pkcs1)
        );
        assert_eq!(PublicKey::from_pem(pem.as_bytes()), Ok(PublicKey::Rsa { n, e }));
        // A private key, garbage, or a key document cut short is no PEM public key.
        for bad in [
            test_key("rsa-a.pem"),
            test_key("ec-a.pem"),
            b"not a key".to_vec(),
            pem.replace("MII", "MIJ").into_bytes(),
        ] {
            assert_eq!(PublicKey::from_pem(&bad), Err(KeyRefusal::Pem));
        }
        assert_eq!(PublicKey::from_spki(&spki.as_ref()[..40]), Err(KeyRefusal::Pem));
        let mut trailing = spki.as_ref().to_vec();
        trailing.push(0);
        assert_eq!(PublicKey::from_spki(&trailing), Err(KeyRefusal::Pem));
    }
}
