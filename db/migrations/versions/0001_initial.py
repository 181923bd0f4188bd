"""The initial ledger: scans, scan_scores, frame_scores, model_versions, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Timestamps are timestamptz on PostgreSQL and UTC text on SQLite (db.models.UTCDateTime).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('model_versions',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('weights_sha256', sa.String(length=64), nullable=True),
    sa.Column('architecture', sa.String(length=64), nullable=True),
    sa.Column('weights_name', sa.String(length=255), nullable=True),
    sa.Column('first_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_model_versions'))
    )
    op.create_table('workers',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scans_done', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_workers'))
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_last_seen_at'), ['last_seen_at'], unique=False)

    op.create_table('scans',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('duplicate_of_id', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claim_token', sa.String(length=64), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disposition', sa.String(length=16), nullable=True),
    sa.Column('disposed_path', sa.Text(), nullable=True),
    sa.Column('disposed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('columns', sa.Integer(), nullable=True),
    sa.Column('frame_count', sa.Integer(), nullable=True),
    sa.Column('samples_per_pixel', sa.Integer(), nullable=True),
    sa.Column('crop_x0', sa.Integer(), nullable=True),
    sa.Column('crop_y0', sa.Integer(), nullable=True),
    sa.Column('crop_x1', sa.Integer(), nullable=True),
    sa.Column('crop_y1', sa.Integer(), nullable=True),
    sa.Column('crop_source', sa.String(length=16), nullable=True),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('sop_class_uid', sa.String(length=64), nullable=True),
    sa.Column('modality', sa.String(length=16), nullable=True),
    sa.Column('manufacturer', sa.String(length=128), nullable=True),
    sa.Column('model_name', sa.String(length=128), nullable=True),
    sa.Column('station_name', sa.String(length=128), nullable=True),
    sa.Column('device_serial_number', sa.String(length=128), nullable=True),
    sa.Column('software_versions', sa.String(length=255), nullable=True),
    sa.Column('transducer', sa.String(length=128), nullable=True),
    sa.Column('institution', sa.String(length=255), nullable=True),
    sa.Column('operator', sa.String(length=128), nullable=True),
    sa.Column('body_part', sa.String(length=64), nullable=True),
    sa.Column('study_datetime', sa.DateTime(), nullable=True),
    sa.Column('acquisition_datetime', sa.DateTime(), nullable=True),
    sa.Column('patient_id_hash', sa.String(length=128), nullable=True),
    sa.Column('frame_time_ms', sa.Float(), nullable=True),
    sa.Column('photometric', sa.String(length=32), nullable=True),
    sa.Column('transfer_syntax', sa.String(length=64), nullable=True),
    sa.Column('burned_in_annotation', sa.String(length=8), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'processing', 'scored', 'skipped', 'failed')", name=op.f('ck_scans_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_scans_attempts')),
    sa.ForeignKeyConstraint(['duplicate_of_id'], ['scans.id'], name=op.f('fk_scans_duplicate_of_id_scans')),
    sa.ForeignKeyConstraint(['model_version'], ['model_versions.version'], name=op.f('fk_scans_model_version_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scans'))
    )
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scans_acquisition_datetime'), ['acquisition_datetime'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_path'), ['path'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_sop_instance_uid'), ['sop_instance_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_station_name'), ['station_name'], unique=False)
        batch_op.create_index('ix_scans_status_finished_at', ['status', 'finished_at'], unique=False)
        batch_op.create_index('ix_scans_status_queued_at', ['status', 'queued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_scans_study_instance_uid'), ['study_instance_uid'], unique=False)

    op.create_table('frame_scores',
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('frame_index', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['model_version'], ['model_versions.version'], name=op.f('fk_frame_scores_model_version_model_versions')),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], name=op.f('fk_frame_scores_scan_id_scans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('scan_id', 'model_version', 'frame_index', name=op.f('pk_frame_scores'))
    )
    op.create_table('scan_scores',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('mean_score', sa.Float(), nullable=False),
    sa.Column('min_score', sa.Float(), nullable=False),
    sa.Column('p10_score', sa.Float(), nullable=False),
    sa.Column('grade', sa.String(length=16), nullable=False),
    sa.Column('frames_scored', sa.Integer(), nullable=False),
    sa.Column('aggregate', sa.String(length=16), nullable=False),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decode_ms', sa.Float(), nullable=True),
    sa.Column('inference_ms', sa.Float(), nullable=True),
    sa.CheckConstraint("grade IN ('good', 'average', 'poor')", name=op.f('ck_scan_scores_grade')),
    sa.ForeignKeyConstraint(['model_version'], ['model_versions.version'], name=op.f('fk_scan_scores_model_version_model_versions')),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], name=op.f('fk_scan_scores_scan_id_scans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_scores')),
    sa.UniqueConstraint('scan_id', 'model_version', name=op.f('uq_scan_scores_scan_id_model_version')),
    sa.UniqueConstraint('sha256', 'model_version', name=op.f('uq_scan_scores_sha256_model_version')),
    sa.UniqueConstraint('sop_instance_uid', 'model_version', name=op.f('uq_scan_scores_sop_instance_uid_model_version'))
    )
    with op.batch_alter_table('scan_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scan_scores_scored_at'), ['scored_at'], unique=False)
        batch_op.create_index('ix_scan_scores_model_version_scored_at', ['model_version', 'scored_at'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('scan_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_scan_scores_model_version_scored_at')
        batch_op.drop_index(batch_op.f('ix_scan_scores_scored_at'))

    op.drop_table('scan_scores')
    op.drop_table('frame_scores')
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scans_study_instance_uid'))
        batch_op.drop_index('ix_scans_status_queued_at')
        batch_op.drop_index('ix_scans_status_finished_at')
        batch_op.drop_index(batch_op.f('ix_scans_station_name'))
        batch_op.drop_index(batch_op.f('ix_scans_sop_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_scans_sha256'))
        batch_op.drop_index(batch_op.f('ix_scans_received_at'))
        batch_op.drop_index(batch_op.f('ix_scans_path'))
        batch_op.drop_index(batch_op.f('ix_scans_acquisition_datetime'))

    op.drop_table('scans')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workers_last_seen_at'))

    op.drop_table('workers')
    op.drop_table('model_versions')
