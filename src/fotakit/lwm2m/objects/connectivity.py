"""Object 4 "Connectivity Monitoring" (object version 1.3, TS Core 1.2 Appendix E.5).

Resource table from the OMA registry's ``4.xml`` (urn:oma:lwm2m:oma:4:1.3). An update job
reads /4/0/0 and /4/0/2 to choose between pull and push.
"""

from __future__ import annotations

import enum
from typing import Final

from fotakit.lwm2m.model import ObjectDef
from fotakit.lwm2m.objects._build import I, S, obj, res


class NetworkBearer(enum.IntEnum):
    """/4/0/0 Network Bearer values (0-20 cellular, 21-40 wireless, 41-50 wireline)."""

    GSM = 0
    TD_SCDMA = 1
    WCDMA = 2
    CDMA2000 = 3
    WIMAX = 4
    LTE_TDD = 5
    LTE_FDD = 6
    NB_IOT = 7
    NR_TDD = 8  # 5G-NR TDD
    NR_FDD = 9  # 5G-NR FDD
    WLAN = 21
    BLUETOOTH = 22
    IEEE_802_15_4 = 23
    ETHERNET = 41
    DSL = 42
    PLC = 43

    @property
    def is_cellular(self) -> bool:
        return 0 <= self.value <= 20


CONNECTIVITY_MONITORING: Final[ObjectDef] = obj(
    4,
    "Connectivity Monitoring",
    version="1.3",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=False,
    description="Parameters of the network connection, for monitoring.",
    resources=[
        res(
            0,
            "Network Bearer",
            "R",
            I,
            mandatory=True,
            range="0..50",
            description="Bearer of the current LwM2M session (see NetworkBearer).",
        ),
        res(
            1,
            "Available Network Bearer",
            "R",
            I,
            multiple=True,
            mandatory=True,
            range="0..50",
            description="Bearers currently available.",
        ),
        res(
            2,
            "Radio Signal Strength",
            "R",
            I,
            mandatory=True,
            description="Average received signal strength in dBm (RSSI/RSCP/RSRP/NRSRP).",
        ),
        res(
            3,
            "Link Quality",
            "R",
            I,
            description="LQI (802.15.4), RxQual (GSM), RSRQ (LTE) or NRSRQ (NB-IoT).",
        ),
        res(
            4,
            "IP Addresses",
            "R",
            S,
            multiple=True,
            mandatory=True,
            description="IP addresses of the connectivity interface.",
        ),
        res(
            5,
            "Router IP Addresses",
            "R",
            S,
            multiple=True,
            description="Next-hop router address of each interface.",
        ),
        res(
            6,
            "Link Utilization",
            "R",
            I,
            range="0..100",
            units="/100",
            description="Average utilization of the link to the next-hop router.",
        ),
        res(
            7, "APN", "R", S, multiple=True, description="Access Point Name for a cellular bearer."
        ),
        res(8, "Cell ID", "R", I, description="Serving cell ID (cellular)."),
        res(9, "SMNC", "R", I, range="0..999", description="Serving Mobile Network Code."),
        res(10, "SMCC", "R", I, range="0..999", description="Serving Mobile Country Code."),
        res(
            11,
            "SignalSNR",
            "R",
            I,
            units="dB",
            description="Signal to interference plus noise ratio.",
        ),
        res(12, "LAC", "R", I, description="Location Area Code (cellular)."),
        res(
            13,
            "Coverage Enhancement Level",
            "R",
            I,
            range="0..4",
            description="0 no coverage enhancement, 1..4 CE level 0..3.",
        ),
    ],
)
