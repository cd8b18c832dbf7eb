//! Parsers of cgroup interface files. They take whatever the file holds (a cgroup can vanish
//! mid-read, a kernel can add keys) and never panic: unknown or malformed lines are skipped.

/// A file holding one unsigned number (`memory.current`, `cpuacct.usage`,
/// `memory.usage_in_bytes`).
pub fn single_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat keyed file: lines `key value` (`cpu.stat`, `memory.stat`,
/// `cpuacct.stat`).
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_ascii_whitespace();
        (words.next()? == key).then_some(())?;
        words.next()?.parse().ok()
    })
}

/// Block-I/O totals over every device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTotals {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// cgroup v2 `io.stat`: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N wios=N
/// dbytes=N dios=N`, summed over devices.
pub fn io_stat(text: &str) -> IoTotals {
    let mut t = IoTotals::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if !words.next().is_some_and(is_device) {
            continue;
        }
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let slot = match key {
                "rbytes" => &mut t.read_bytes,
                "wbytes" => &mut t.write_bytes,
                "rios" => &mut t.reads,
                "wios" => &mut t.writes,
                _ => continue,
            };
            *slot = slot.saturating_add(value);
        }
    }
    t
}

/// cgroup v1 `blkio.throttle.io_service_bytes` / `io_serviced` (and their `_recursive`
/// forms): lines `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` and a closing `Total N`.
/// Returns the (read, write) sums over devices.
pub fn blkio_rwstat(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if !words.next().is_some_and(is_device) {
            continue;
        }
        let (Some(op), Some(value), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match op {
            "Read" => read = read.saturating_add(value),
            "Write" => write = write.saturating_add(value),
            _ => {}
        }
    }
    (read, write)
}

/// `MAJ:MIN` with both parts decimal.
fn is_device(word: &str) -> bool {
    word.split_once(':').is_some_and(|(maj, min)| {
        !maj.is_empty()
            && !min.is_empty()
            && maj.bytes().all(|b| b.is_ascii_digit())
            && min.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_flat_keyed_files() {
        let cpu = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n";
        assert_eq!(flat_keyed(cpu, "usage_usec"), Some(123_456));
        assert_eq!(flat_keyed(cpu, "system_usec"), Some(23_456));
        assert_eq!(flat_keyed(cpu, "user"), None, "whole keys only");
        assert_eq!(flat_keyed("anon 5\nanon_thp 7\n", "anon"), Some(5));
        assert_eq!(flat_keyed("user 12\nsystem 3\n", "system"), Some(3));
        assert_eq!(single_u64("4096\n"), Some(4096));
        assert_eq!(single_u64("max\n"), None);
    }

    #[test]
    fn sums_io_stat_over_devices() {
        let text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    8:16 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=5 dios=6\n";
        assert_eq!(
            io_stat(text),
            IoTotals {
                read_bytes: 4196,
                write_bytes: 8392,
                reads: 4,
                writes: 6
            }
        );
        assert_eq!(io_stat(""), IoTotals::default());
    }

    #[test]
    fn sums_blkio_rwstat_over_devices_without_totals() {
        let text = "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 12288\n\
                    254:0 Discard 0\n254:0 Total 12288\n8:0 Read 1\n8:0 Write 2\nTotal 12291\n";
        assert_eq!(blkio_rwstat(text), (4097, 8194));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_garbage(text in "\\PC*") {
            let _ = single_u64(&text);
            let _ = flat_keyed(&text, "usage_usec");
            let _ = io_stat(&text);
            let _ = blkio_rwstat(&text);
        }

        #[test]
        fn io_stat_survives_near_miss_lines(
            lines in proptest::collection::vec(
                ("[0-9:]{0,6}", proptest::collection::vec("[a-z]{0,7}=?[0-9]{0,25}", 0..8)),
                0..8,
            )
        ) {
            let text: String = lines
                .iter()
                .map(|(dev, fields)| format!("{dev} {}\n", fields.join(" ")))
                .collect();
            let _ = io_stat(&text);
            let _ = blkio_rwstat(&text);
        }

        #[test]
        fn flat_keyed_finds_every_written_value(values in proptest::collection::vec(any::<u64>(), 1..6)) {
            let text: String = values.iter().enumerate().map(|(i, v)| format!("k{i} {v}\n")).collect();
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(flat_keyed(&text, &format!("k{i}")), Some(*v));
            }
        }
    }
}
