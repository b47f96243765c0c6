"""Naming and scaling of I/O elements per model family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.io_elements import (
    FAMILY_FMB,
    FAMILY_FMC650,
    IO_ELEMENTS,
    NAMED_ELEMENTS,
    model_family,
    named_values,
    raw_io_json,
)


class TestModelFamily:
    @pytest.mark.parametrize(
        "model", ["FMC650", "fmc650", " FMB640 ", "FMC640", "FMM640", "FMM650", "FMB630", "FM6300"]
    )
    def test_fmx6_professional_models_use_the_fmc650_table(self, model):
        assert model_family(model) == FAMILY_FMC650

    @pytest.mark.parametrize("model", ["", "FMB120", "FMC130", "FMB920", "FMC920", "TAT100", "?"])
    def test_every_other_model_uses_the_fmb_table(self, model):
        assert model_family(model) == FAMILY_FMB


class TestTables:
    def test_every_named_element_is_in_its_family_table(self):
        for family, names in NAMED_ELEMENTS.items():
            for name, named in names.items():
                assert named.io_id in IO_ELEMENTS[family], (family, name)

    @pytest.mark.parametrize("family", [FAMILY_FMC650, FAMILY_FMB])
    def test_the_key_values_have_names_in_both_families(self, family):
        names = NAMED_ELEMENTS[family]

        for name in (
            "ignition",
            "movement",
            "gsm_signal",
            "sleep_mode",
            "gnss_status",
            "data_mode",
            "gnss_pdop",
            "gnss_hdop",
            "external_voltage",
            "battery_voltage",
            "battery_current",
            "speed_gnss",
            "total_odometer",
            "trip_odometer",
            "digital_input_1",
            "analog_input_1",
            "digital_output_1",
            "lls_fuel_level_1",
            "fuel_level_can_percent",
            "vin",
        ):
            assert name in names

    def test_the_families_number_gnss_status_and_odometer_differently(self):
        assert NAMED_ELEMENTS[FAMILY_FMC650]["gnss_status"].io_id == 71
        assert NAMED_ELEMENTS[FAMILY_FMB]["gnss_status"].io_id == 69
        assert NAMED_ELEMENTS[FAMILY_FMC650]["total_odometer"].io_id == 216
        assert NAMED_ELEMENTS[FAMILY_FMB]["total_odometer"].io_id == 16

    def test_table_rows_carry_width_sign_scale_and_unit(self):
        external_voltage = IO_ELEMENTS[FAMILY_FMC650][66]

        assert external_voltage.name == "external_voltage"
        assert external_voltage.byte_width == 2
        assert external_voltage.signed is False
        assert external_voltage.multiplier == 0.001
        assert external_voltage.unit == "V"


class TestNamedValues:
    def test_the_same_ids_mean_different_things_per_family(self):
        io: dict[int, int | bytes] = {71: 3, 69: 1, 216: 120_000, 16: 5_000}
        sizes = {71: 1, 69: 1, 216: 4, 16: 4}

        fmc650 = named_values(io, sizes, "FMC650")
        fmb = named_values(io, sizes, "FMB120")

        assert (fmc650["gnss_status"], fmc650["total_odometer"]) == (3, 120_000)
        assert (fmb["gnss_status"], fmb["total_odometer"]) == (1, 5_000)

    def test_voltages_arrive_in_millivolts_and_are_given_in_volts(self):
        named = named_values({66: 24_100, 67: 4_050}, {66: 2, 67: 2}, "FMC650")

        assert named["external_voltage"] == 24.1
        assert named["battery_voltage"] == 4.05

    def test_scaled_values_are_rounded_to_the_multipliers_decimals(self):
        named = named_values({66: 12_345, 181: 7}, {}, "FMB120")

        assert named["external_voltage"] == 12.345
        assert named["gnss_pdop"] == 0.7

    def test_battery_current_is_given_in_amperes_on_both_families(self):
        assert named_values({68: 1_500}, {68: 2}, "FMC650")["battery_current"] == 1.5
        assert named_values({68: 1_500}, {68: 2}, "FMB120")["battery_current"] == 1.5

    def test_signed_elements_come_out_negative(self):
        # Dallas temperature 1: -12.5 °C as a 2-byte two's complement of -125.
        named = named_values({72: 0x10000 - 125, 201: 0xFFFC}, {72: 2, 201: 2}, "FMC650")

        assert named["dallas_temperature_1"] == -12.5
        assert named["lls_fuel_level_1"] == -4

    def test_signedness_applies_at_the_width_the_value_was_sent_in(self):
        # The FMB table says 4 bytes; a device that sends 2 is read at 2.
        assert named_values({72: 0xFF83}, {72: 2}, "FMB120")["dallas_temperature_1"] == -12.5
        assert named_values({72: 0xFFFFFF83}, {}, "FMB120")["dallas_temperature_1"] == -12.5

    def test_unscaled_values_stay_integers(self):
        named = named_values({239: 1, 21: 4}, {239: 1, 21: 1}, "FMC650")

        assert named == {"ignition": 1, "gsm_signal": 4}
        assert isinstance(named["ignition"], int)

    def test_a_printable_vin_is_text(self):
        named = named_values({528: b"WDB9634031L123456"}, {528: 17}, "FMC650")

        assert named["vin"] == "WDB9634031L123456"

    def test_an_empty_vin_and_other_byte_values_are_hex(self):
        assert named_values({256: bytes(17)}, {}, "FMB120")["vin"] == "00" * 17
        assert named_values({66: b"\x5e\x10"}, {}, "FMB120")["external_voltage"] == "5e10"

    def test_unknown_ids_are_not_named_but_stay_in_the_raw_io(self):
        io: dict[int, int | bytes] = {239: 1, 60_000: 7, 10_831: b"\x01\xab"}

        named = named_values(io, {}, "FMC650")
        raw = raw_io_json(io)

        assert named == {"ignition": 1}
        assert raw == {"239": 1, "60000": 7, "10831": "01ab"}

    def test_the_raw_io_is_json(self):
        raw = raw_io_json({1: 0, 385: b"\xff\x00"})

        assert json.loads(json.dumps(raw)) == {"1": 0, "385": "ff00"}

    def test_a_documented_record_names_its_values(self):
        vectors = json.loads(Path(__file__).with_name("vectors.json").read_text("utf-8"))
        vector = next(v for v in vectors if v["name"] == "codec8_legacy_30_io_real_fix")
        frame = bytes.fromhex(vector["hex"])
        (record,) = codec.decode_avl_frame(frame).records

        named = named_values(record.io, record.io_sizes, "FMC650")

        assert named["gnss_status"] == 3
        assert named["data_mode"] == 1
        assert named["movement"] == 0
        assert named["external_voltage"] == 11.935
        assert named["battery_voltage"] == 1.751
        assert named["analog_input_1"] == 0.115
        assert named["gnss_pdop"] == 1.1
        assert named["gnss_hdop"] == 0.7
