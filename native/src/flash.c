/* A flash session: the image checked, then BootROM, agent and data phases in order
 * (docs/flashing.md), each on the timeline; the wire helpers every phase uses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "flash_link.h"
#include "fotabench/appimage.h"
#include "fotabench/clock.h"

#define SLICE_NS (50 * FB_NS_PER_MS) /* longest wait between two cancel polls */
#define WDT_ADDR 0xA0030000u
#define WDT_OFF 0x2200u
#define REMAP_ADDR 0xA0510000u /* written 2 before the agent's second part (MT6261 capture) */

struct fb_flasher {
    fb_serial *port;
    const fb_da_file *da;
    fb_flash_config cfg;
    char source[FB_TIMELINE_NAME_MAX + 1];
};

void fb_flash_config_init(fb_flash_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->baud = 921600;
    cfg->reset = 1;
    cfg->handshake_timeout_ns = 60 * FB_NS_PER_S;
    cfg->answer_timeout_ns = 3 * FB_NS_PER_S;
    cfg->max_resends = 3;
}

static int64_t deadline_after(int64_t ns)
{
    return fb_deadline_in(ns); /* the one rule: FB_DEADLINE_NEVER stays never */
}

static int cancelled(fb_flash_link *l)
{
    return l->cfg->cancel.stop && l->cfg->cancel.stop(l->cfg->cancel.ctx);
}

static fb_status cancel_error(fb_error *err)
{
    return fb_error_set(err, FB_ERR_CANCELLED, "flash cancelled; the module stays in download "
                        "mode or half-written: power it again and flash again");
}

fb_status link_write(fb_flash_link *l, const void *data, size_t n, fb_error *err)
{
    if (cancelled(l))
        return cancel_error(err);
    /* Room for the bytes at the line rate, twice over, plus the answer timeout. */
    int64_t line_ns = (int64_t)n * 10 * FB_NS_PER_S / (l->baud > 0 ? l->baud : 115200);
    fb_status st = fb_serial_write(l->port, data, n, deadline_after(2 * line_ns +
                                                                    l->cfg->answer_timeout_ns),
                                   err);
    if (st != FB_OK)
        return st;
    l->res->tx_bytes += n;
    /* The port's buffer takes the bytes at once; the module has them only at the line
     * rate: answers are awaited from then on. */
    int64_t now = fb_now_ns();
    l->line_free_ns = (l->line_free_ns > now ? l->line_free_ns : now) + line_ns;
    if (l->cfg->trace)
        l->cfg->trace(l->cfg->ctx, FB_FLASH_TRACE_TX, data, n, fb_now_ns());
    return FB_OK;
}

fb_status link_write_u8(fb_flash_link *l, uint8_t v, fb_error *err)
{
    return link_write(l, &v, 1, err);
}

fb_status link_read_some(fb_flash_link *l, uint8_t *buf, size_t n, int64_t timeout_ns,
                         size_t *got, fb_error *err)
{
    int64_t deadline = deadline_after(timeout_ns);
    if (l->line_free_ns > fb_now_ns() && deadline != FB_DEADLINE_NEVER)
        deadline += l->line_free_ns - fb_now_ns();
    *got = 0;
    while (*got < n) {
        if (cancelled(l))
            return cancel_error(err);
        int64_t now = fb_now_ns();
        if (now >= deadline)
            break;
        int64_t slice = deadline - now < SLICE_NS ? deadline : now + SLICE_NS;
        size_t k = 0;
        fb_status st = fb_serial_read(l->port, buf + *got, n - *got, &k, slice, err);
        if (st == FB_ERR_LOST)
            return fb_error_set(err, FB_ERR_PROTOCOL, "bytes from the module were lost (the "
                                "port's buffer overflowed); flash again");
        if (st != FB_OK)
            return st;
        if (k) {
            l->res->rx_bytes += k;
            if (l->cfg->trace)
                l->cfg->trace(l->cfg->ctx, FB_FLASH_TRACE_RX, buf + *got, k, fb_now_ns());
            *got += k;
        }
    }
    return FB_OK;
}

fb_status link_read(fb_flash_link *l, uint8_t *buf, size_t n, int64_t timeout_ns,
                    const char *what, fb_error *err)
{
    size_t got;
    fb_status st = link_read_some(l, buf, n, timeout_ns, &got, err);
    if (st != FB_OK || got == n)
        return st;
    char seen[3 * 8 + 1] = "";
    for (size_t i = 0; i < got && i < 8; i++)
        snprintf(seen + 3 * i, sizeof seen - 3 * i, "%02X ", buf[i]);
    return fb_error_set(err, FB_ERR_TIMEOUT,
                        "the module did not send %s within %.1f s (%zu of %zu bytes came%s%s): "
                        "it was reset or lost power, or the line dropped bytes; power it again "
                        "with PWRKEY held low and flash again",
                        what, (double)timeout_ns / FB_NS_PER_S, got, n, got ? ": " : "", seen);
}

fb_status link_expect(fb_flash_link *l, uint8_t want, const char *what, fb_error *err)
{
    uint8_t b;
    fb_status st = link_read(l, &b, 1, l->cfg->answer_timeout_ns, what, err);
    if (st == FB_OK && b != want)
        st = fb_error_set(err, FB_ERR_PROTOCOL,
                          "the module answered %02X to %s (%02X expected): the session lost "
                          "sync; power the module again and flash again", b, what, want);
    return st;
}

fb_status link_pause(fb_flash_link *l, int64_t ns, fb_error *err)
{
    int64_t deadline = deadline_after(ns);
    for (int64_t now = fb_now_ns(); now < deadline; now = fb_now_ns()) {
        if (cancelled(l))
            return cancel_error(err);
        struct timespec ts = fb_ns_to_timespec(deadline - now < SLICE_NS ? deadline - now
                                                                          : SLICE_NS);
        nanosleep(&ts, NULL);
    }
    return FB_OK;
}

fb_status link_set_baud(fb_flash_link *l, int baud, fb_error *err)
{
    fb_serial_config c;
    fb_serial_config_init(&c);
    c.baud = baud;
    fb_status st = fb_serial_configure(l->port, &c, err);
    if (st == FB_OK)
        l->baud = baud;
    return st;
}

void link_event(fb_flash_link *l, const char *kind, const char *fmt, ...)
{
    if (!l->cfg->timeline)
        return;
    char data[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(data, sizeof data, fmt, ap);
    va_end(ap);
    fb_timeline_add(l->cfg->timeline, 0, l->cfg->source, kind, data, NULL, NULL);
}

fb_status link_progress(fb_flash_link *l, const char *phase, uint64_t done, uint64_t total,
                        fb_error *err)
{
    link_event(l, "flash.progress", "{\"phase\":\"%s\",\"done\":%llu,\"total\":%llu}", phase,
               (unsigned long long)done, (unsigned long long)total);
    if (l->cfg->progress && l->cfg->progress(l->cfg->ctx, phase, done, total))
        return cancel_error(err);
    if (cancelled(l))
        return cancel_error(err);
    return FB_OK;
}

fb_flasher *fb_flasher_new(fb_serial *port, const fb_da_file *da, const fb_flash_config *cfg,
                           fb_error *err)
{
    if (!port || !da) {
        fb_error_set(err, FB_ERR_ARG, "a flasher needs an open port and a DA file");
        return NULL;
    }
    fb_flasher *fl = calloc(1, sizeof *fl);
    if (!fl) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    fl->port = port;
    fl->da = da;
    if (cfg)
        fl->cfg = *cfg;
    else
        fb_flash_config_init(&fl->cfg);
    snprintf(fl->source, sizeof fl->source, "%s", cfg && cfg->source ? cfg->source : "flash");
    fl->cfg.source = fl->source;
    if (fl->cfg.max_resends < 0)
        fl->cfg.max_resends = 0;
    if (fl->cfg.answer_timeout_ns <= 0)
        fl->cfg.answer_timeout_ns = 3 * FB_NS_PER_S;
    return fl;
}

void fb_flasher_free(fb_flasher *fl)
{
    free(fl);
}

/* "MC60/MC20": the named candidates at the image's load address. */
static void candidate_names(const fb_app_info *app, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < app->n_candidates; i++) {
        if (!app->candidates[i]->name)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", used ? "/" : "", app->candidates[i]->name);
    }
}

static void phase(fb_flash_link *l, const char *name)
{
    link_event(l, "flash.phase", "{\"phase\":\"%s\"}", name);
}

/* Everything after the image check; the caller stamps the outcome. */
static fb_status session(fb_flasher *fl, fb_flash_link *l, const uint8_t *image, size_t n,
                         const fb_app_info *app, fb_error *err)
{
    fb_flash_result *res = l->res;
    int64_t t0 = fb_now_ns();
    fb_status st = fb_serial_flush(fl->port, FB_SERIAL_FLUSH_INPUT, err);
    if (st == FB_OK)
        st = link_set_baud(l, 115200, err);
    if (st != FB_OK)
        return st;

    phase(l, "handshake");
    st = brom_handshake(l, deadline_after(fl->cfg.handshake_timeout_ns), err);
    if (st != FB_OK)
        return st;
    res->handshake_ns = fb_now_ns() - t0;
    int64_t t1 = fb_now_ns();
    phase(l, "identify");
    uint32_t hw = 0;
    st = brom_get_version(l, &res->brom_version, err);
    if (st == FB_OK)
        st = brom_read32(l, FB_CHIP_ID_ADDR, &hw, err);
    if (st != FB_OK)
        return st;
    res->hw_id = (uint16_t)(hw >> 16);
    res->chip = fb_chip_by_hw_id(res->hw_id);
    link_event(l, "flash.chip", "{\"hw_id\":\"0x%04X\",\"chip\":\"%s\",\"brom_version\":%u}",
               res->hw_id, res->chip ? res->chip->name : "unknown", res->brom_version);
    if (!res->chip)
        return fb_error_set(err, FB_ERR_UNSUPPORTED,
                            "chip id 0x%04X (at 0xA01C0108) is not an MT6261 (0x35C0) or MT2503 "
                            "(0x3600, 0x7640): this is not an M66/M26/MC60/MC60E module",
                            res->hw_id);
    /* The image's model: the candidates at its load address (MC60 and MC20 share one)
     * that are built on this chip. Rows without a model name cannot be judged: taken
     * on the image's word when they are all there is. */
    const fb_model *on_chip = NULL;
    char names[96];
    candidate_names(app, names, sizeof names);
    for (size_t i = 0; !on_chip && i < app->n_candidates; i++) {
        const fb_model *c = app->candidates[i];
        if (c->name && fb_chip_has_model(res->chip, c->name))
            on_chip = c;
    }
    if (names[0] && !on_chip)
        return fb_error_set(err, FB_ERR_MODEL,
                            "the image is for %s (load address 0x%08X) but the module is an %s "
                            "(%s%s%s): take the app built for this module",
                            names, app->load_address, res->chip->name, res->chip->models[0],
                            res->chip->models[1] ? "/" : "",
                            res->chip->models[1] ? res->chip->models[1] : "");
    res->model = on_chip;
    st = brom_write16(l, WDT_ADDR, WDT_OFF, err);
    if (st == FB_OK)
        st = brom_target_config(l, &res->target_config, err);
    if (st == FB_OK && (res->target_config & 1))
        st = fb_error_set(err, FB_ERR_UNSUPPORTED,
                          "the module has secure boot on (target config 0x%08X): it needs a "
                          "signed agent and image, which fotabench does not make",
                          res->target_config);
    if (st == FB_OK)
        st = brom_me_id(l, res->me_id, err);
    if (st != FB_OK)
        return st;

    const fb_da_entry *entry = fb_da_file_find(fl->da, res->chip->da_hw_code);
    if (!entry)
        return fb_error_set(err, FB_ERR_IMAGE,
                            "the DA file has no agent for %s (hw code 0x%04X): use the "
                            "MTK_AllInOne_DA.bin of a QFlash version made for the %s",
                            res->chip->name, res->chip->da_hw_code, res->chip->models[0]);
    phase(l, "agent");
    for (uint16_t r = entry->entry_region_index; st == FB_OK && r < entry->region_count; r++) {
        const fb_da_region *reg = &entry->regions[r];
        if (r == entry->entry_region_index + 1)
            st = brom_write32(l, REMAP_ADDR, 2, err);
        if (st == FB_OK)
            st = brom_send_da(l, reg->start_address, fb_da_file_region_data(fl->da, reg),
                              reg->length, reg->sig_len, err);
    }
    if (st == FB_OK)
        st = brom_jump_da(l, entry->regions[entry->entry_region_index].start_address, err);
    if (st == FB_OK)
        st = da_start(l, err);
    if (st == FB_OK && fl->cfg.baud != 115200) {
        phase(l, "speed");
        st = da_set_speed(l, fl->cfg.baud, err);
    }
    if (st != FB_OK)
        return st;
    res->baud = l->baud;
    res->agent_ns = fb_now_ns() - t1;

    uint32_t start = app->load_address & 0x07FFFFFFu;
    int64_t t2 = fb_now_ns();
    phase(l, "erase");
    st = da_erase(l, start, (uint32_t)n, get_le16(image + 0x18), err);
    if (st != FB_OK)
        return st;
    res->erase_ns = fb_now_ns() - t2;
    int64_t t3 = fb_now_ns();
    phase(l, "write");
    st = da_write(l, image, (uint32_t)n, err);
    if (st != FB_OK)
        return st;
    res->write_ns = fb_now_ns() - t3;
    if (fl->cfg.verify) {
        int64_t t4 = fb_now_ns();
        phase(l, "verify");
        st = da_verify(l, start, image, (uint32_t)n, err);
        if (st != FB_OK)
            return st;
        res->verified = 1;
        res->verify_ns = fb_now_ns() - t4;
    }
    phase(l, "finish");
    return da_finish(l, fl->cfg.reset, err);
}

fb_status fb_flasher_flash(fb_flasher *fl, const uint8_t *image, size_t n,
                           fb_flash_result *result, fb_error *err)
{
    fb_flash_result local;
    fb_flash_result *res = result ? result : &local;
    memset(res, 0, sizeof *res);
    fb_flash_link l = {fl->port, &fl->cfg, res, 115200, 0};
    int64_t t0 = fb_now_ns();
    /* The image first: nothing goes on the wire for a file that could not boot. */
    fb_app_info app;
    fb_error local_err;
    fb_error *e = err ? err : &local_err;
    fb_status st = image ? fb_app_image_check(image, n, n, NULL, &app, NULL, e)
                         : fb_error_set(e, FB_ERR_ARG, "no image");
    if (st == FB_OK && n > 0x00FFFFFFu)
        st = fb_error_set(e, FB_ERR_IMAGE, "the image is too large for a module's flash");
    if (st == FB_OK) {
        res->address = app.load_address;
        res->length = (uint32_t)n;
        char names[96];
        candidate_names(&app, names, sizeof names);
        link_event(&l, "flash.start", "{\"models\":\"%s\",\"address\":\"0x%08X\",\"length\":%zu,"
                   "\"baud\":%d,\"verify\":%d}",
                   names, app.load_address, n, fl->cfg.baud, fl->cfg.verify);
        st = session(fl, &l, image, n, &app, e);
    }
    res->total_ns = fb_now_ns() - t0;
    if (st == FB_OK) {
        link_event(&l, "flash.done", "{\"chip\":\"%s\",\"bytes\":%u,\"resends\":%u,"
                   "\"total_ms\":%lld}", res->chip->name, res->length, res->resends,
                   (long long)(res->total_ns / FB_NS_PER_MS));
    } else {
        char msg[FB_ERROR_MSG_MAX + 16];
        fb_json_string(msg, sizeof msg, e->message, strlen(e->message), NULL);
        link_event(&l, "flash.error", "{\"status\":\"%s\",\"message\":%s}", fb_status_name(st),
                   msg);
    }
    /* Leave the port as the next user expects it. */
    if (l.baud != 115200)
        link_set_baud(&l, 115200, NULL);
    return st;
}
