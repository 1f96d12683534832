#!/usr/bin/env node
/*
 * A stock third-party LwM2M 1.0 device on lwm2m-node-lib 1.4.0, updated by fotakit with the
 * *bare payload* form (docs/operator-guide.md, "Third-party devices"). Driven by
 * tests/interop/test_vendor_device.py.
 *
 * Usage: node vendor_device.js <server-host> <server-port> <endpoint> <device-class> <version>
 *
 * Objects (OMA LwM2M registry 3.xml and 5.xml):
 *   /3/0  0 Manufacturer "VNDR Inc.", 1 Model Number = <device-class>, 3 Firmware Version
 *   /5/0  1 Package URI (write starts the download), 2 Update (execute), 3 State,
 *         5 Update Result, 8 Firmware Update Protocol Support = [0] (CoAP),
 *         9 Firmware Update Delivery Method = 0 (pull only)
 *
 * The Object 5 state machine is TS Core 1.1.1 E.6.1: a Package URI written in Idle ->
 * Downloading -> Downloaded (or Idle with an Update Result); an empty URI -> Idle, Result 0;
 * Update executed in Downloaded -> Updating -> reboot (De-register, Register again) into the
 * new image with Result 1 "Firmware updated successfully".
 *
 * The download is a CoAP GET of the Package URI with node-coap 0.22 (lwm2m-node-lib's own
 * CoAP stack), which follows Block2 (RFC 7959 §2.4) and hands over the whole body. The image
 * check is the vendor's own, like stock firmware, on this format:
 *
 *   "VNDR" | version length (1 byte) | version (ASCII) | payload length (4 bytes, BE)
 *          | payload | CRC-32 (4 bytes, BE; ISO-HDLC, as zlib) over everything before it
 *
 * Not "VNDR", or a header that does not parse -> Idle, Update Result 6 "Unsupported package
 * type" (a fotakit signed package, COSE/CBOR, ends here); a length or CRC-32 that does not
 * match -> Idle, Result 5 "Integrity check failure". A URI that is not coap:// -> Result 9
 * "Unsupported protocol"; a 4.xx/5.xx answer -> Result 7 "Invalid URI"; no answer -> Result 4
 * "Connection lost during download". The version booted is the one in the header.
 *
 * What lwm2m-node-lib lacks and this device adds: the library answers Reads only in text,
 * one resource at a time (a Read of an object instance is a 4.04), and node-coap drops any
 * request with an Accept it does not know. The server reads /3/0 and /5/0 as instances, in
 * TLV (the format TS Core 1.0.2 §6.4 makes mandatory for 1.0 clients), so the device knows
 * TLV and answers those Reads itself; every other Read, Observe included, is the library's.
 * An Observe of an instance is answered as a plain Read (RFC 7641 §4.1: not observable);
 * the library observes single resources (/5/0/3, /5/0/5) and notifies on each change.
 *
 * stdout: one JSON object per line —
 *   {"event":"registered","location":"rd/..","local_port":N,"version":".."}
 *   {"event":"request","method":"GET","path":"/5/0","accept":11542|null,"observe":bool}
 *   {"event":"firmware","state":S,"result":R}           (every State/Result change)
 *   {"event":"download","uri":".."}  {"event":"downloaded","bytes":N,"version":".."}
 *   {"event":"rejected","result":R,"why":".."}          (download or image check failed)
 *   {"event":"rebooting","version":".."} {"event":"deregistered"}
 *   {"event":"error","where":"..","message":".."}
 * stdin: "quit" (or EOF) exits.
 */
'use strict';

var logger = require('logops');
logger.setStream(process.stderr);
logger.setLevel(process.env.NODELIB_LOG_LEVEL || 'FATAL');

var lwm2m = require('lwm2m-node-lib');
var coap = require('coap');
var readline = require('readline');
var url = require('url');

var client = lwm2m.client;
var registry = client.registry;

var host = process.argv[2] || '127.0.0.1';
var port = Number(process.argv[3] || 5683);
var endpoint = process.argv[4] || 'vndr-0001';
var deviceClass = process.argv[5] || 'vndr-meter';
var version = process.argv[6] || '1.0.0';
var downloadTimeoutMs = 1000 * Number(process.env.VENDOR_DOWNLOAD_TIMEOUT_S || 30);

var TLV = 'application/vnd.oma.lwm2m+tlv';
var TLV_NUMBER = 11542;

// Firmware Update State and Update Result (TS Core 1.1.1 E.6, registry 5.xml).
var IDLE = 0, DOWNLOADING = 1, DOWNLOADED = 2, UPDATING = 3;
var RESULT = {INITIAL: 0, SUCCESS: 1, CONNECTION_LOST: 4, INTEGRITY: 5, UNSUPPORTED_TYPE: 6,
    INVALID_URI: 7, UNSUPPORTED_PROTOCOL: 9};

var fw = {uri: '', state: IDLE, result: RESULT.INITIAL, image: null, download: 0};
var deviceInfo = null;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(where, error) {
    emit({event: 'error', where: where, message: String(error && (error.message || error.name) || error)});
}

// -- the objects ---------------------------------------------------------------------------

// TLV types of the resources this device has (registry 3.xml, 5.xml): everything not listed
// is a String. lwm2m-node-lib keeps every value as a string.
var INTEGER = {'/5/0/3': true, '/5/0/5': true, '/5/0/8': true, '/5/0/9': true};
var MULTIPLE = {'/5/0/8': true};

var initial = [
    ['/3/0', '0', 'VNDR Inc.'],         // Manufacturer
    ['/3/0', '1', deviceClass],         // Model Number: the device class fotakit targets
    ['/3/0', '3', version],             // Firmware Version
    ['/3/0', '16', 'U'],                // Supported Binding and Modes
    ['/5/0', '1', ''],                  // Package URI
    ['/5/0', '3', String(IDLE)],        // State
    ['/5/0', '5', String(RESULT.INITIAL)],  // Update Result
    ['/5/0', '8', '0'],                 // Protocol Support: one instance, 0 = CoAP
    ['/5/0', '9', '0']                  // Delivery Method: 0 = pull only
];

function setAll(rows, done) {
    var pending = rows.length;
    rows.forEach(function (r) {
        registry.setResource(r[0], r[1], r[2], function (error) {
            if (error) {
                fail('set ' + r[0] + '/' + r[1], error);
            }
            pending -= 1;
            if (pending === 0 && done) {
                done();
            }
        });
    });
}

function createObjects(done) {
    registry.create('/3/0', function (e1) {
        registry.create('/5/0', function (e2) {
            if (e1 || e2) {
                fail('create', e1 || e2);
            }
            setAll(initial, done);
        });
    });
}

/* Only what changed (lwm2m-node-lib notifies an observer on every set, changed or not),
 * and the Result before the State: a server observing both resources judges a new State
 * with the last Result it saw, so "Idle" must not arrive while the Result still says 0. */
function setFirmware(state, result) {
    var rows = [];
    if (result !== fw.result) {
        rows.push(['/5/0', '5', String(result)]);
    }
    if (state !== fw.state) {
        rows.push(['/5/0', '3', String(state)]);
    }
    fw.state = state;
    fw.result = result;
    if (rows.length > 0) {
        setAll(rows);
    }
    emit({event: 'firmware', state: state, result: result});
}

// -- TLV (OMA-TS-LightweightM2M-V1_0_2 §6.4.3) --------------------------------------------

function tlvHeader(type, id, length) {
    var idBytes = id > 255 ? 2 : 1;
    var lenBytes = length < 8 ? 0 : (length < 256 ? 1 : (length < 65536 ? 2 : 3));
    var head = [type | (idBytes === 2 ? 0x20 : 0) | (lenBytes << 3) | (lenBytes === 0 ? length : 0)];
    if (idBytes === 2) {
        head.push(id >> 8);
    }
    head.push(id & 0xff);
    for (var i = lenBytes - 1; i >= 0; i--) {
        head.push((length >> (8 * i)) & 0xff);
    }
    return Buffer.from(head);
}

function tlvValue(path, text) {
    if (!INTEGER[path]) {
        return Buffer.from(text, 'utf8');
    }
    var n = parseInt(text, 10);
    if (n >= -128 && n <= 127) {
        var b1 = Buffer.alloc(1);
        b1.writeInt8(n, 0);
        return b1;
    }
    if (n >= -32768 && n <= 32767) {
        var b2 = Buffer.alloc(2);
        b2.writeInt16BE(n, 0);
        return b2;
    }
    var b4 = Buffer.alloc(4);
    b4.writeInt32BE(n, 0);
    return b4;
}

function tlvResource(objectUri, id, text) {
    var path = objectUri + '/' + id;
    var value = tlvValue(path, text);
    if (MULTIPLE[path]) {
        // type 01: Resource Instance (instance 0), inside type 10: Multiple Resource
        var inner = Buffer.concat([tlvHeader(0x40, 0, value.length), value]);
        return Buffer.concat([tlvHeader(0x80, Number(id), inner.length), inner]);
    }
    return Buffer.concat([tlvHeader(0xc0, Number(id), value.length), value]);
}

/* The Read lwm2m-node-lib cannot answer: TLV, of an instance or of one resource. */
function readTlv(req, res, original, user) {
    var parts = req.urlObj.pathname.split('/').filter(function (p) {
        return p !== '';
    });
    if (parts.length < 2 || parts.length > 3) {
        return original(req, res, user);
    }
    var objectUri = '/' + parts[0] + '/' + parts[1];
    registry.get(objectUri, function (error, obj) {
        if (error) {
            return answer(res, '4.04');
        }
        var ids = parts.length === 3 ? [parts[2]] : Object.keys(obj.attributes);
        var chunks = [];
        ids.forEach(function (id) {
            var text = obj.attributes[id];
            if (text !== undefined) {  // an empty Package URI is a value too (length 0)
                chunks.push(tlvResource(objectUri, id, String(text)));
            }
        });
        if (chunks.length === 0) {
            return answer(res, '4.04');
        }
        answer(res, '2.05', Buffer.concat(chunks));
    });
}

/* One answer, never with an Observe option: to an Observe it is a plain Read (RFC 7641
 * §4.1, "not observable"). node-coap hands an Observe request an ObserveWriteStream that
 * adds the option to anything written and keeps only its own statusCode, so that answer is
 * sent with the stream's one-shot _doSend instead. */
function answer(res, code, tlv) {
    if (tlv) {
        res.setOption('Content-Format', TLV);
    }
    if (typeof res._doSend === 'function') {
        res.statusCode = code;
        res._doSend(tlv || Buffer.alloc(0));
    } else {
        res.code = code;
        res.end(tlv || '');
    }
}

function hasOption(req, name) {
    return (req._packet.options || []).some(function (o) {
        return o.name === name;
    });
}

function installHandlers(info) {
    var handlers = info.serverInfo.handlers;
    var libRead = handlers.read.lib;
    handlers.read.lib = function (req, res, user) {
        var wantsTlv = req.headers && req.headers.Accept === TLV;
        if (wantsTlv) {
            return readTlv(req, res, libRead, user);
        }
        return libRead(req, res, user);
    };
    var libWrite = handlers.write.lib;
    handlers.write.lib = function (req, res, user) {
        if (req.url.indexOf('?') >= 0) {
            return libWrite(req, res, user);  // Write-Attributes: the library keeps them
        }
        // only the Package URI is writable; refuse before the library stores anything
        if (req.urlObj.pathname !== '/5/0/1') {
            res.code = '4.05';
            return res.end('');
        }
        if (fw.state !== IDLE && req.payload.length > 0) {
            res.code = '4.05';  // E.6.1: a new URI only in Idle (an empty one resets anywhere)
            return res.end('');
        }
        return libWrite(req, res, user);
    };
    info.serverInfo.server.on('request', function (req) {
        emit({
            event: 'request',
            method: req.method,
            path: req.url.split('?')[0],
            accept: req.headers && req.headers.Accept === TLV ? TLV_NUMBER : (req.headers && req.headers.Accept) || null,
            observe: hasOption(req, 'Observe')
        });
    });
    client.setHandler(info.serverInfo, 'write', onWrite);
    client.setHandler(info.serverInfo, 'execute', onExecute);
}

// -- Object 5 --------------------------------------------------------------------------------

function onWrite(objectType, objectId, resourceId, value, callback) {
    fw.uri = value;
    fw.download += 1;  // a download in flight is abandoned
    fw.image = null;
    callback(null);
    if (value === '') {
        setFirmware(IDLE, RESULT.INITIAL);
    } else {
        setFirmware(DOWNLOADING, RESULT.INITIAL);
        download(value, fw.download);
    }
}

function onExecute(objectType, objectId, resourceId, args, callback) {
    if (objectType !== '5' || objectId !== '0' || resourceId !== '2') {
        return callback({code: '4.05', message: 'not executable'});
    }
    if (fw.state !== DOWNLOADED) {
        return callback({code: '4.05', message: 'nothing downloaded'});
    }
    callback(null);
    setFirmware(UPDATING, RESULT.INITIAL);
    setImmediate(reboot);
}

function reject(result, why) {
    emit({event: 'rejected', result: result, why: why});
    setFirmware(IDLE, result);
}

function download(uri, attempt) {
    var target = url.parse(uri);
    emit({event: 'download', uri: uri});
    if (target.protocol !== 'coap:') {
        return reject(RESULT.UNSUPPORTED_PROTOCOL, 'not a coap:// URI');
    }
    var done = false;
    function finish(result, why, image) {
        if (done || attempt !== fw.download) {
            return;  // timed out already, or a newer write superseded this download
        }
        done = true;
        clearTimeout(timer);
        if (image === undefined) {
            return reject(result, why);
        }
        var checked = checkImage(image);
        if (checked.result !== RESULT.INITIAL) {
            return reject(checked.result, checked.why);
        }
        fw.image = checked;
        emit({event: 'downloaded', bytes: image.length, version: checked.version});
        setFirmware(DOWNLOADED, RESULT.INITIAL);
    }
    var timer = setTimeout(function () {
        finish(RESULT.CONNECTION_LOST, 'no answer within ' + downloadTimeoutMs + ' ms');
    }, downloadTimeoutMs);
    var req = coap.request({
        hostname: target.hostname,
        port: Number(target.port || 5683),
        pathname: target.pathname,
        method: 'GET',
        agent: new coap.Agent({type: 'udp4'})
    });
    req.on('response', function (res) {
        if (res.code !== '2.05') {
            return finish(RESULT.INVALID_URI, 'answer ' + res.code);
        }
        finish(RESULT.INITIAL, null, res.payload);
    });
    req.on('error', function (error) {
        finish(RESULT.CONNECTION_LOST, String(error && error.message || error));
    });
    req.end();
}

// -- the vendor's image format -----------------------------------------------------------------

var CRC_TABLE = (function () {
    var table = [];
    for (var n = 0; n < 256; n++) {
        var c = n;
        for (var k = 0; k < 8; k++) {
            c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        }
        table.push(c >>> 0);
    }
    return table;
})();

function crc32(buf) {
    var c = 0xffffffff;
    for (var i = 0; i < buf.length; i++) {
        c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
    }
    return (c ^ 0xffffffff) >>> 0;
}

/* {result: 0, version} for a good image, else {result: 5|6, why}. */
function checkImage(image) {
    if (image.length < 10 || image.toString('latin1', 0, 4) !== 'VNDR') {
        return {result: RESULT.UNSUPPORTED_TYPE, why: 'no VNDR magic'};
    }
    var vlen = image[4];
    var head = 5 + vlen + 4;
    if (vlen === 0 || image.length < head + 4) {
        return {result: RESULT.UNSUPPORTED_TYPE, why: 'header does not parse'};
    }
    var versionBytes = image.slice(5, 5 + vlen);
    for (var i = 0; i < versionBytes.length; i++) {
        if (versionBytes[i] < 0x21 || versionBytes[i] > 0x7e) {
            return {result: RESULT.UNSUPPORTED_TYPE, why: 'version is not printable ASCII'};
        }
    }
    var plen = image.readUInt32BE(5 + vlen);
    if (image.length !== head + plen + 4) {
        return {result: RESULT.INTEGRITY, why: 'length ' + image.length + ' != ' + (head + plen + 4)};
    }
    var stated = image.readUInt32BE(head + plen);
    var actual = crc32(image.slice(0, head + plen));
    if (stated !== actual) {
        return {result: RESULT.INTEGRITY, why: 'CRC-32 ' + actual + ' != stated ' + stated};
    }
    return {result: RESULT.INITIAL, version: versionBytes.toString('ascii')};
}

// -- registration and reboot -------------------------------------------------------------------

function register() {
    client.register(host, port, null, endpoint, function (error, info) {
        if (error) {
            fail('register', error);
            return;
        }
        deviceInfo = info;
        installHandlers(info);
        emit({event: 'registered', location: info.location, local_port: info.localPort, version: version});
    });
}

/* Updating -> the new image boots: De-register (the library also drops its observations and
 * closes its socket), then Register again running the version of the image's header. */
function reboot() {
    var image = fw.image;
    emit({event: 'rebooting', version: image.version});
    client.unregister(deviceInfo, function (error) {
        if (error) {
            fail('deregister', error);
        }
        emit({event: 'deregistered'});
        version = image.version;
        fw.image = null;
        fw.uri = '';
        fw.state = IDLE;
        fw.result = RESULT.SUCCESS;
        setAll([
            ['/3/0', '3', version],
            ['/5/0', '1', ''],
            ['/5/0', '5', String(RESULT.SUCCESS)],
            ['/5/0', '3', String(IDLE)]
        ], function () {
            emit({event: 'firmware', state: IDLE, result: RESULT.SUCCESS});
            register();
        });
    });
}

function handleCommand(line) {
    var cmd = line.trim();
    if (cmd === 'quit') {
        process.exit(0);
    } else if (cmd) {
        fail('command', 'unknown command: ' + cmd);
    }
}

client.init({
    client: {
        lifetime: String(process.env.LWM2M_LIFETIME || 60),
        version: '1.0',
        logLevel: process.env.NODELIB_LOG_LEVEL || 'FATAL',
        observe: {period: 3000},
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        // node-coap drops requests whose Accept it does not know: teach it TLV too
        formats: [{name: 'lightweightm2m/text', value: 1541}, {name: TLV, value: TLV_NUMBER}],
        writeFormat: 'lightweightm2m/text'
    }
});
createObjects(register);

readline.createInterface({input: process.stdin}).on('line', handleCommand).on('close', function () {
    process.exit(0);
});
